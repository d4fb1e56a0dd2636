import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """These tests use small tensors: one intra-op thread is fastest, and on a shared CPU extra
    threads only contend (several times slower under load). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
