"""Replaying the layers under a LoRA (`FrozenBelow`): the same losses and gradients as running them, bit for bit."""

from __future__ import annotations

import pytest
import torch

from engine.adapters import Adapter
from engine.models import decoder_layers
from engine.offline.encode import Batch, initial_pairs, joint_loss, pad_batches, question_examples
from engine.offline.frozen import FrozenBelow
from engine.offline.recipes import recipe_config
from tests.test_offline_encode import short_records


def trainable(loaded, seed: int) -> Adapter:
    """A facts-recipe LoRA (upper half) with a non-zero B, so it changes every layer above the frozen ones."""
    config = recipe_config("facts")
    gen = torch.Generator().manual_seed(seed)
    pairs = {key: (torch.nn.Parameter(a.clone()), torch.nn.Parameter(torch.randn(b.shape, generator=gen) * 0.02))
             for key, (a, b) in initial_pairs(loaded.arch, config).items()}
    return Adapter(pairs, config.scale)


def loss_and_grads(model, batches: list[Batch], adapters: list[Adapter]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    with torch.enable_grad():
        losses = joint_loss(model, batches, adapters)
        params = [t for ad in adapters for ab in ad.pairs.values() for t in ab]
        grads = torch.autograd.grad(losses.sum(), params)
    return losses.detach(), list(grads)


def test_replayed_lower_layers_give_the_same_losses_and_gradients(loaded):
    pad = loaded.tokenizer.pad_token_id or 0
    records = short_records(2)
    batches = [pad_batches(question_examples(loaded.tokenizer, r, "answer") * 2, 2, pad)[0] for r in records]
    adapters = [trainable(loaded, 0), trainable(loaded, 1)]
    first = min(layer for layer, _ in adapters[0].pairs)
    assert first > 0
    plain = loss_and_grads(loaded.model, batches, adapters)
    frozen = FrozenBelow(loaded.model, first)
    for _ in range(2):  # the first pass records, the second replays without running layers 0..first-1
        with frozen.step(0):
            again = loss_and_grads(loaded.model, batches, adapters)
        assert torch.equal(again[0], plain[0])
        assert all(torch.equal(x, y) for x, y in zip(again[1], plain[1], strict=True))
    # the replay really skips them: a broken lower layer goes unnoticed while replaying, and is back after
    lower = decoder_layers(loaded.model)[0]
    with frozen.step(0):
        lower.__dict__["forward"].forward = None  # the stand-in's saved forward: calling it would fail
        assert torch.equal(loss_and_grads(loaded.model, batches, adapters)[0], plain[0])
    assert "forward" not in lower.__dict__  # the layer's own forward again


def test_a_step_that_fails_while_recording_records_again(loaded):
    pad = loaded.tokenizer.pad_token_id or 0
    batch = pad_batches(question_examples(loaded.tokenizer, short_records(1)[0], "answer"), 1, pad)[0]
    adapter = trainable(loaded, 2)
    expected = loss_and_grads(loaded.model, [batch], [adapter])[0]
    frozen = FrozenBelow(loaded.model, min(layer for layer, _ in adapter.pairs))
    with pytest.raises(RuntimeError), frozen.step("k"):
        raise RuntimeError("cancelled mid-step")
    assert "k" not in frozen.tapes and all("forward" not in layer.__dict__ for layer in decoder_layers(loaded.model))
    for _ in range(2):
        with frozen.step("k"):
            assert torch.equal(loss_and_grads(loaded.model, [batch], [adapter])[0], expected)


def tiny_model(kind: str):
    """Four random layers of another architecture; Qwen2 with a sliding window (its cache layers differ)."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=True, sliding_window=16, max_window_layers=2))
    else:
        model = MistralForCausalLM(MistralConfig(**common))
    model.eval().requires_grad_(False)
    return model


@pytest.mark.parametrize("kind", ["qwen2", "mistral"])
def test_replay_holds_on_other_architectures(kind):
    model = tiny_model(kind)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, 64, (6,), generator=gen)  # a shared prefix, then each row's own tokens
    rows = [torch.cat([prompt, torch.randint(3, 64, (n,), generator=gen)]) for n in (5, 7, 4)]
    width = max(len(r) for r in rows)
    ids, labels, mask = torch.zeros(3, width, dtype=torch.long), torch.full((3, width), -100), torch.zeros(3, width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)], labels[i, 8:len(row)], mask[i, :len(row)] = row, row[8:], 1
    batches = [Batch(ids[:2], labels[:2], mask[:2]), Batch(ids[2:], labels[2:], mask[2:])]
    adapters = []
    for seed in (1, 2):
        g = torch.Generator().manual_seed(seed)
        pairs = {(layer, module): (torch.nn.Parameter(torch.randn(2, fan_in, generator=g) * 0.1),
                                   torch.nn.Parameter(torch.randn(fan_out, 2, generator=g) * 0.1))
                 for layer in (2, 3) for module, (fan_in, fan_out) in
                 {"gate_proj": (32, 48), "up_proj": (32, 48), "down_proj": (48, 32)}.items()}
        adapters.append(Adapter(pairs, 1.0))
    plain = loss_and_grads(model, batches, adapters)
    frozen = FrozenBelow(model, 2)
    for _ in range(2):
        with frozen.step(0):
            again = loss_and_grads(model, batches, adapters)
        assert torch.equal(again[0], plain[0]) and all(torch.equal(x, y) for x, y in zip(again[1], plain[1], strict=True))
