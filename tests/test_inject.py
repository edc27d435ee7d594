"""Per-row LoRA injection: exact against peft, per-row isolation, nothing left behind."""

from __future__ import annotations

import copy

import pytest
import torch

from engine.adapters import Adapter, from_state_dict, random_adapter
from engine.inject import inject
from engine.models import describe
from tests.conftest import make_tiny_llama

IDS = torch.tensor([[5, 17, 33, 9, 64, 101, 3]])


def logits(model, ids=IDS, mask=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def test_single_row_matches_peft_lora(tiny):
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    peft_model = get_peft_model(
        copy.deepcopy(tiny),
        LoraConfig(r=2, lora_alpha=32, lora_dropout=0.0, target_modules=["gate_proj", "up_proj", "down_proj"]),
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    expected = logits(peft_model)
    adapter = from_state_dict(get_peft_model_state_dict(peft_model), scale=32 / 2)
    assert adapter.rank == 2 and len(adapter.pairs) == 2 * 3
    with inject(tiny, [adapter]):
        got = logits(tiny)
    assert (got - logits(tiny)).abs().max() > 1e-3, "the adapter must actually change the logits"
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_each_row_gets_its_own_adapter(tiny):
    arch = describe(tiny, "tiny")
    one = random_adapter(arch, rank=2, scale=16.0, std=0.05, seed=1)
    two = random_adapter(arch, rank=3, scale=1.0, std=0.2, seed=2)  # different rank: padded inside
    ids = torch.tensor([[5, 17, 33, 9], [8, 2, 77, 41], [90, 12, 6, 50]])
    with inject(tiny, [None, one, two]):
        batched = logits(tiny, ids)
    alone = [logits(tiny, ids[:1])]
    for row, adapter in ((1, one), (2, two)):
        with inject(tiny, [adapter]):
            alone.append(logits(tiny, ids[row:row + 1]))
    for row in range(3):
        torch.testing.assert_close(batched[row], alone[row][0], atol=1e-5, rtol=0)
    assert (batched[1] - batched[0]).abs().max() > 1e-3


def test_left_padded_rows_match_unpadded_runs(tiny):
    arch = describe(tiny, "tiny")
    adapter = random_adapter(arch, rank=2, scale=16.0, std=0.05, seed=4)
    ids = torch.tensor([[0, 0, 7, 8, 9], [1, 2, 3, 4, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with inject(tiny, [adapter, None]):
        batched = logits(tiny, ids, mask)
    with inject(tiny, [adapter]):
        alone = logits(tiny, ids[:1, 2:])
    torch.testing.assert_close(batched[0, -1], alone[0, -1], atol=1e-5, rtol=0)


def test_model_is_unchanged_after_exit_even_on_error(tiny):
    arch = describe(tiny, "tiny")
    base = logits(tiny)
    weights = {k: v.clone() for k, v in tiny.state_dict().items()}
    with pytest.raises(RuntimeError):
        with inject(tiny, [random_adapter(arch, rank=2, scale=16.0, std=0.5)]):
            assert (logits(tiny) - base).abs().max() > 1e-3
            raise RuntimeError("boom")
    assert torch.equal(logits(tiny), base)
    assert all(torch.equal(v, weights[k]) for k, v in tiny.state_dict().items())
    assert not any(m._forward_hooks for m in tiny.modules())


def test_gradients_flow_to_generated_lora(tiny):
    """Training (encode, translator) injects parameters through the same code path."""
    arch = describe(tiny, "tiny")
    a = torch.zeros(2, arch.hidden_size, requires_grad=True)
    b = torch.full((arch.intermediate_size, 2), 0.1, requires_grad=True)
    adapter = Adapter({(0, "up_proj"): (a, b)}, scale=2.0)
    with inject(tiny, [adapter]):
        out = tiny(input_ids=IDS).logits.sum()
    out.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_batch_size_mismatch_is_refused(tiny):
    arch = describe(tiny, "tiny")
    with inject(tiny, [random_adapter(arch, 2), None]):
        with pytest.raises(ValueError, match="2 adapters"):
            logits(tiny, torch.tensor([[1, 2], [3, 4], [5, 6]]))


def test_other_model_sizes_work():
    model = make_tiny_llama(seed=3, layers=3, hidden=16, intermediate=24)
    arch = describe(model, "t3")
    assert (arch.num_layers, arch.hidden_size, arch.intermediate_size) == (3, 16, 24)
    with inject(model, [random_adapter(arch, 2, std=0.3)]):
        assert (logits(model) - 0).abs().sum() > 0


def test_a_start_leaves_the_earlier_positions_to_the_model_as_it_is(tiny):
    arch = describe(tiny, "tiny")
    adapter = random_adapter(arch, rank=2, scale=16.0, std=0.05, seed=5)
    bare = logits(tiny)
    with inject(tiny, [adapter]):
        everywhere = logits(tiny)
    with inject(tiny, [adapter], starts=[3]):
        from_three = logits(tiny)
    with inject(tiny, [adapter], starts=[0]):
        from_zero = logits(tiny)
    torch.testing.assert_close(from_three[0, :3], bare[0, :3], atol=1e-6, rtol=0)
    torch.testing.assert_close(from_zero, everywhere, atol=1e-6, rtol=0)
    later = from_three[0, 3:]
    # From the start on the delta acts, on hidden states the adapter did not make before it.
    assert (later - bare[0, 3:]).abs().max() > 1e-3 and (later - everywhere[0, 3:]).abs().max() > 1e-4


def test_each_row_keeps_its_own_start(tiny):
    arch = describe(tiny, "tiny")
    adapter = random_adapter(arch, rank=2, scale=16.0, std=0.05, seed=6)
    ids = torch.tensor([[5, 17, 33, 9, 64], [8, 2, 77, 41, 3]])
    with inject(tiny, [adapter, adapter], starts=[2, 4]):
        batched = logits(tiny, ids)
    for row, start in ((0, 2), (1, 4)):
        with inject(tiny, [adapter], starts=[start]):
            torch.testing.assert_close(batched[row], logits(tiny, ids[row:row + 1])[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="starts"):
        with inject(tiny, [adapter], starts=[1, 2]):
            pass
