"""Fixtures shared by the XNOR engine's tests."""

import pytest
import torch

from binsr import xnor


@pytest.fixture(params=xnor.KERNELS)
def kernel(request):
    """Each XNOR kernel this machine runs (the portable one always); the others are skipped with the reason."""
    problem = xnor.kernel_problem(request.param)
    if problem is not None:
        pytest.skip(f"XNOR kernel {request.param} cannot run here: {problem}")
    previous = xnor.current_kernel()
    xnor.setup(request.param)
    yield request.param
    xnor.setup(previous)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """The engine's thread count, which is torch's."""
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)
