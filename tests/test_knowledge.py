"""Knowledge a LoRA really carries: the default recipe stores a fictional passage's facts in the embedded model.

The model cannot know the sample corpus's fictional towns, firms and people, so with the question
alone in the prompt vanilla can only guess. PRAG, with the LoRA the explorer encodes on demand
for the retrieved passage, must make the gold answer far more likely and say it on most questions.
A random perturbation of the weights passes neither check.
"""

from __future__ import annotations

import pytest

from engine.corpus import load_corpus, sample_questions_path
from engine.explorer import AskRequest, Explorer
from engine.methods import METHODS
from engine.metrics import contains_any
from engine.offline.encode import OnDemandEncoder
from engine.offline.recipes import DEFAULT_RECIPE, recipe_config
from engine.probes import ProbeSet
from engine.qa import load_qa
from engine.retrieval import BM25Retriever
from engine.store import LoraStore

STRIDE = 3
"""Every third fictional question (9 of 25): about two minutes of encoding on 2 cores."""


@pytest.fixture(scope="module")
def fictional_runs(loaded, tmp_path_factory):
    items = [item for item in load_qa(sample_questions_path()) if item.meta.get("group") == "fictional"][::STRIDE]
    store = LoraStore(tmp_path_factory.mktemp("loras"), loaded.model_id, recipe_config(DEFAULT_RECIPE))
    explorer = Explorer(loaded, BM25Retriever(load_corpus(None)), store, None, "no translator", encoder=OnDemandEncoder(loaded))
    runs = []
    for item in items:
        probes = ProbeSet.for_item(item)
        request = AskRequest(item.question, (METHODS["vanilla"], METHODS["prag"]), top_k=1, max_new_tokens=12,
                             encode_missing=True, scores=probes.candidates())
        comparison = explorer.ask(request)
        vanilla, prag = comparison.answers
        assert vanilla.error is None and prag.error is None, prag.error
        runs.append((item, vanilla, prag, probes))
    return runs


def test_the_lora_makes_the_gold_answer_more_likely(fictional_runs):
    gains = [probes.measure(prag)["gold"] - probes.measure(vanilla)["gold"] for _, vanilla, prag, probes in fictional_runs]
    print("gold log-prob gain per question:", [round(g, 1) for g in gains])
    assert sum(g > 0 for g in gains) >= len(gains) - 1, gains  # nearly every question
    assert sorted(gains)[len(gains) // 2] > 5.0, gains  # the median gain: e^5 times more likely, not a nudge


def test_prag_alone_answers_most_fictional_questions(fictional_runs):
    right = [contains_any(prag.text, item.answers) for item, _, prag, _ in fictional_runs]
    guessed = [contains_any(vanilla.text, item.answers) for item, vanilla, _, _ in fictional_runs]
    print("prag:", [prag.text for _, _, prag, _ in fictional_runs])
    assert sum(right) >= len(right) * 2 / 3 and sum(guessed) <= 1, (right, guessed)  # most, where vanilla guesses none
