"""pooch in place of minigan's hand-written MNIST downloader, under the existing download tests.

    python benchmarks/compare_pooch.py

Runs tests/test_data.py's download tests twice against their local HTTP mirror (missing, corrupt,
cut-off, silent, Range-ignoring servers; nothing leaves the machine): once with
minigan.data.mnist._fetch as it is, once with _fetch replaced by pooch.retrieve (sha256 known,
pooch's HTTPDownloader with the same socket timeout, tqdm progress off). Prints a table of the
tests each passes and a last JSON line. Whichever passes more is the more robust downloader.
"""
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

DOWNLOAD_TESTS = ["download", "resume", "cut_off", "hang_up", "corrupt_cache", "dead_mirror",
                  "silent_mirror", "name_lookup", "env_var_mirrors", "part_longer"]


def pooch_fetch(url, dest, sha256, budget):
    """minigan.data.mnist._fetch's contract, done by pooch: returns the bytes fetched, raises
    _DownloadFailed."""
    import pooch
    from minigan.data import mnist
    folder, name = os.path.split(dest)
    try:
        pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=name, path=folder,
                       downloader=pooch.HTTPDownloader(progressbar=False,
                                                       timeout=budget.timeout()))
    except Exception as e:   # pooch raises requests' errors and ValueError for a bad hash
        raise mnist._DownloadFailed(f"{type(e).__name__}: {e}") from None
    budget.answered = True
    return os.path.getsize(dest)


class Collect:
    def __init__(self):
        self.results = {}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.results[report.nodeid.split("::")[-1]] = report.outcome


def run(patch):
    from minigan.data import mnist
    original = mnist._fetch
    if patch:
        mnist._fetch = pooch_fetch
    collect = Collect()
    try:
        pytest.main(["-q", "-p", "no:cacheprovider", os.path.join(ROOT, "tests", "test_data.py"),
                     "-k", " or ".join(DOWNLOAD_TESTS)], plugins=[collect])
    finally:
        mnist._fetch = original
    return collect.results


def main():
    import pooch
    mine, theirs = run(False), run(True)
    print(f"\n{'test':60s} {'urllib (minigan)':>17s} {'pooch ' + pooch.__version__:>12s}")
    for name in mine:
        print(f"{name:60s} {mine[name]:>17s} {theirs.get(name, '-'):>12s}")
    passed = {k: sum(v == "passed" for v in r.values()) for k, r in (("urllib", mine),
                                                                     ("pooch", theirs))}
    print(f"{'passed':60s} {passed['urllib']:>17d} {passed['pooch']:>12d}")
    print(json.dumps({"tests": len(mine), "passed": passed,
                      "pooch_failed": sorted(k for k, v in theirs.items() if v != "passed")}))


if __name__ == "__main__":
    main()
