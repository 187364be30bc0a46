"""Fixtures shared by the tests: the XNOR kernels and thread counts, and a deadline."""

import os
import signal
from contextlib import contextmanager

import pytest
import torch

from binsr.engine import native, xnor


@pytest.fixture(params=xnor.KERNELS)
def kernel(request):
    """Each XNOR kernel this machine runs (the portable one always); the others are skipped with the reason. With
    BINSR_REQUIRE_KERNELS=1 (CI) a native kernel that does not build on a CPU that has its instructions fails
    instead: a compile error must not pass as "this CPU lacks AVX-512"."""
    problem = xnor.kernel_problem(request.param)
    if problem is not None:
        if _kernels_required() and request.param in native.ISAS and not native.missing_features(request.param):
            pytest.fail(f"XNOR kernel {request.param} does not build on a CPU that has its instructions: {problem} "
                        "(BINSR_REQUIRE_KERNELS is set, so this is a failure, not a skip)", pytrace=False)  # fmt: skip
        pytest.skip(f"XNOR kernel {request.param} cannot run here: {problem}")
    previous = xnor.current_kernel()
    xnor.setup(request.param)
    yield request.param
    xnor.setup(previous)


def _kernels_required() -> bool:
    return os.environ.get("BINSR_REQUIRE_KERNELS", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """The engine's thread count, which is torch's."""
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)


@pytest.fixture
def deadline():
    """`with deadline(seconds):` raises TimeoutError in a block that has used `seconds` of CPU time and still runs,
    so a hang (say, a loop building a million modules) fails the test instead of stalling the suite. CPU time of
    this process (ITIMER_PROF), not wall time, so that other jobs on a shared machine do not fail it."""

    @contextmanager
    def limit(seconds: float):
        def expire(signum, frame):
            raise TimeoutError(f"still running after {seconds} s of CPU time")

        previous = signal.signal(signal.SIGPROF, expire)
        signal.setitimer(signal.ITIMER_PROF, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous)

    return limit
