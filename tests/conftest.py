"""Shared test setup: Hypothesis profiles and a seeded, isolated minigan state for every test.

Profiles: "ci" (loaded when the environment variable CI is set) draws the same examples on every
run and keeps no example database, so a failure reproduces exactly; "dev" (the default) draws
fresh examples each run and remembers failing ones. Both print the blob that replays a failing
example with ``@reproduce_failure``. Tests that set ``max_examples`` themselves keep theirs.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

import minigan

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, max_examples=20, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "dev", deadline=None, max_examples=20, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def seeded():
    """Seed minigan's generators (dropout, randn) before each test, and restore the default dtype
    afterwards so a test that changes it cannot leak into the next one."""
    minigan.manual_seed(0)
    dtype = minigan.get_default_dtype()
    yield
    minigan.set_default_dtype(dtype)


# --- devices ------------------------------------------------------------------------------------
NO_GPU_REASON = "no CUDA device (CuPy missing or no GPU)"

# "cpu" always; "cuda" marked ``gpu`` and skipped, naming why, where CuPy or a GPU is missing, so
# a CPU-only CI run stays green and ``-m gpu`` selects exactly the tests that need a device.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not minigan.backend.cupy_available(),
                                                   reason=NO_GPU_REASON)]),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device a test should run on: 'cpu', then 'cuda' (see ``DEVICES``)."""
    return request.param
