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
