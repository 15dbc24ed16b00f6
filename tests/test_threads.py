"""`torch_threads`: a thread count for one call, the caller's back afterwards (issue 18, item 5)."""

import pytest
import torch

from elk_lens._threads import torch_threads


def test_the_callers_thread_count_is_back_after_the_call_and_after_an_error():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"), torch_threads(other):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_a_bad_thread_count_names_the_argument(bad):
    with pytest.raises((ValueError, TypeError), match="threads"), torch_threads(bad):
        pass
