"""One torch thread for these tiny tensors (the fixture lives in tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _single_torch_thread(single_torch_thread):
    yield
