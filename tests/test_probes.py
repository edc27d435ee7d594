"""Answer-likelihood probes, weighted merges and layer ranges: the maths on tiny random models."""

from __future__ import annotations

import math

import pytest
import torch

from engine.adapters import keep_layers, merge_sum, random_adapter
from engine.generate import _grouped_prefill, score_continuations
from engine.inject import inject
from engine.models import ModelArch, describe
from engine.probes import ProbeSet, memorization_ratio, summarize_probes
from engine.qa import Conflict, QAItem
from tests.conftest import make_tiny_llama


def _arch(model) -> ModelArch:
    return describe(model, "tiny")


def _full_logprob(model, prompt: list[int], continuation: list[int], adapter) -> float:
    """The slow reference: one forward over prompt + continuation, this row alone."""
    ids = torch.tensor([prompt + continuation])
    with inject(model, [adapter]), torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)[0]
    return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(continuation))


def test_scores_from_the_prefill_cache_equal_full_forward_passes():
    model = make_tiny_llama(seed=3)
    arch = _arch(model)
    prompts = [[5, 9, 17, 33, 4], [5, 9, 17, 33, 4], [7, 8, 60, 61, 62, 63, 64, 70]]
    adapters = [None, random_adapter(arch, rank=2, scale=4.0, std=0.2, seed=1), random_adapter(arch, rank=3, scale=2.0, std=0.2, seed=2)]
    candidates = [[11], [12, 13, 14], [40, 41]]
    logits, cache, mask = _grouped_prefill(model, None, prompts, adapters)
    with inject(model, adapters), torch.inference_mode():
        scores = score_continuations(model, logits, cache, mask, [candidates] * 3)
        # the cache is cut back: scoring twice gives the same numbers
        again = score_continuations(model, logits, cache, mask, [candidates] * 3)
        # rows of different questions score their own answers, of other lengths and counts, in the same steps
        own = [[[12, 13, 14]], [[40, 41], [11]], [[11], [12, 13, 14], [40, 41]]]
        mixed = score_continuations(model, logits, cache, mask, own)
    assert [v for row in scores for v in row] == pytest.approx([v for row in again for v in row], abs=1e-6)
    for row, (prompt, adapter) in enumerate(zip(prompts, adapters, strict=False)):
        for col, cand in enumerate(candidates):
            assert scores[row][col] == pytest.approx(_full_logprob(model, prompt, cand, adapter), abs=1e-4)
    for row, (prompt, adapter) in enumerate(zip(prompts, adapters, strict=True)):
        assert len(mixed[row]) == len(own[row])
        for col, cand in enumerate(own[row]):
            assert mixed[row][col] == pytest.approx(_full_logprob(model, prompt, cand, adapter), abs=1e-4)
    # different adapters really move the scores (the check above is not trivially about row 0)
    assert abs(scores[0][1] - scores[1][1]) > 1e-3


def test_weighted_merge_is_the_weighted_sum_of_deltas_and_layers_filter():
    model = make_tiny_llama(seed=4, layers=3)
    arch = _arch(model)
    one, two = (random_adapter(arch, rank=2, scale=3.0, std=0.1, seed=s) for s in (5, 6))
    merged = merge_sum([one, two], [0.25, 0.75], "weighted")
    for key in one.pairs:
        expected = 0.25 * 3.0 * one.pairs[key][1] @ one.pairs[key][0] + 0.75 * 3.0 * two.pairs[key][1] @ two.pairs[key][0]
        a, b = merged.pairs[key]
        assert torch.allclose(merged.scale * b @ a, expected, atol=1e-6)
    middle = keep_layers(merged, (1, 1))
    assert {layer for layer, _ in middle.pairs} == {1} and middle.meta["layers"] == "1-1"
    assert keep_layers(merged, None) is merged


def test_probe_set_and_summary():
    item = QAItem("q1", "Who?", ("Ada Lovelace", "ada lovelace", "Lovelace", "A. L.", "Countess"),
                  conflict=Conflict(("Babbage",), ("Ada Lovelace",)))
    probes = ProbeSet.for_item(item)
    assert probes.gold == ("Ada Lovelace", "Lovelace", "A. L.")  # case duplicates dropped, at most 3
    assert probes.candidates() == ("Ada Lovelace", "Lovelace", "A. L.", "Babbage")
    assert memorization_ratio(-1.0, -1.0) == pytest.approx(0.5)
    assert memorization_ratio(0.0, -math.log(3)) == pytest.approx(0.75)
    assert memorization_ratio(0.0, -5000.0) == pytest.approx(1.0)  # no overflow
    mine = [{"gold": -2.0, "original": -5.0, "substituted": -1.0}, {"gold": -6.0, "original": -1.0, "substituted": -3.0}]
    vanilla = [{"gold": -4.0}, None]
    summary = summarize_probes(mine, vanilla)
    assert summary.gold_logprob == pytest.approx(-4.0)
    assert summary.gold_gain == pytest.approx(2.0) and summary.gold_up == 1.0  # only the question vanilla has
    assert summary.context_over_memory == 0.5
    assert summary.memorization == pytest.approx((memorization_ratio(-5, -1) + memorization_ratio(-1, -3)) / 2)
