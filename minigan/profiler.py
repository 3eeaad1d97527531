"""A per-op profiler: forward and backward time and call counts, printable as a table.

    with minigan.profiler.profile() as prof:
        loss = model(x).mean(); loss.backward()
    print(prof.table())
"""
import contextlib

from . import autograd


class Profile:
    def __init__(self):
        self.stats = {}   # op name -> [forward calls, forward s, backward calls, backward s]

    def table(self, sort_by="total", limit=30):
        rows = sorted(self.stats.items(), key=lambda kv: -(kv[1][1] + kv[1][3]))[:limit]
        total = sum(s[1] + s[3] for s in self.stats.values()) or 1.0
        lines = [f"{'op':<22}{'calls':>7}{'fwd ms':>10}{'bwd calls':>11}{'bwd ms':>10}{'share':>8}",
                 "-" * 68]
        for name, (fc, fs, bc, bs) in rows:
            lines.append(f"{name:<22}{fc:>7}{fs * 1e3:>10.2f}{bc:>11}{bs * 1e3:>10.2f}"
                         f"{(fs + bs) / total:>8.1%}")
        lines.append(f"{'total':<22}{'':>7}{sum(s[1] for s in self.stats.values()) * 1e3:>10.2f}"
                     f"{'':>11}{sum(s[3] for s in self.stats.values()) * 1e3:>10.2f}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


@contextlib.contextmanager
def profile():
    """Record every op's forward and backward time inside the block (backward times include
    the ops that the backward rule itself runs)."""
    prof = Profile()
    previous, autograd._profile = autograd._profile, prof.stats
    try:
        yield prof
    finally:
        autograd._profile = previous
