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


def test_a_small_ccs_search_runs_on_one_thread_and_leaves_the_callers_count(monkeypatch):
    """CCS's restarts on small pairs: one thread for the call (benchmarks/threads_bench.py), then the caller's."""
    import elk_lens.reporters.ccs as ccs

    seen = []
    real = ccs.ccs_restarts
    monkeypatch.setattr(ccs, "ccs_restarts", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen)
    y = x[:, 0] > 0
    before = torch.get_num_threads()
    with torch_threads(2):
        ccs.fit_ccs(x, -x, y, site="s", n_restarts=2)
        ccs.fit_ccs(x, -x, y, site="s", n_restarts=2, threads=2)
        assert torch.get_num_threads() == 2
    assert seen == [1, 2] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        ccs.fit_ccs(x, -x, y, site="s", threads=0)
