"""One torch thread for these tiny tensors: two threads on shared, busy cores are ~100× slower."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
