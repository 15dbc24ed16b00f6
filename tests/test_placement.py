"""elk_lens._placement: reading weights HF accelerate offloaded (the model-level checks, with a bridge, are in
tests/test_models.py and tests/circuits/test_circuits.py)."""

import pytest
import torch
from accelerate import cpu_offload
from torch import nn

from elk_lens._placement import input_device, onload, onloaded


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 3), nn.LayerNorm(3))


def test_offloaded_weights_read_back_equal_the_weights_before_offload():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cpu_offload(net, execution_device=torch.device("cpu"))
    assert all(p.is_meta for p in net.parameters())
    state = onloaded(net, net.state_dict(keep_vars=True))
    assert sorted(state) == sorted(before) and all(torch.equal(state[k], before[k]) for k in before)
    with onload(net[1]):
        assert torch.equal(net[1].weight, before["1.weight"])
    assert net[1].weight.is_meta  # back where accelerate keeps it
    assert input_device(net) == torch.device("cpu")


def test_weights_that_were_never_loaded_are_refused_by_name():
    with torch.device("meta"):
        net = _net()
    with pytest.raises(
        ValueError, match=r"the weights \['0.weight', '1.weight', '1.bias', '2.weight'\] are on the meta"
    ):
        onloaded(net, net.state_dict(keep_vars=True))
    with pytest.raises(ValueError, match="the model's embedding is on the meta device"):
        input_device(net)


def test_a_model_in_memory_reads_as_it_is():
    net = _net()
    state = onloaded(net, net.state_dict(keep_vars=True))
    assert all(not v.requires_grad and torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    with onload(net):
        pass
    assert input_device(net) == torch.device("cpu")
