"""Paired method comparisons: per-question differences with bootstrap intervals over question groups."""

from __future__ import annotations

import json
import random
from pathlib import Path

from engine.evaluate.paired import paired_delta, question_groups
from engine.qa import QAItem
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
FICTIONAL = ROOT / "assets" / "results" / "fictional.record.jsonl"


def _scores(values: list[float]) -> dict[str, tuple[float, float]]:
    return {f"q{i}": (value, value) for i, value in enumerate(values)}


def test_a_method_against_itself_is_told_apart_from_nothing():
    same = _scores([random.Random(1).random() for _ in range(40)])
    delta = paired_delta("rag", "RAG", "rag", same, same, {})
    assert delta is not None
    assert (delta.f1, delta.f1_low, delta.f1_high) == (0.0, 0.0, 0.0) and not delta.clear
    assert (delta.wins, delta.ties, delta.losses) == (0, 40, 0)


def test_a_method_better_on_most_questions_is_told_apart():
    rng = random.Random(2)
    theirs = _scores([rng.random() * 0.5 for _ in range(60)])
    mine = {qid: (em + 0.3 + rng.gauss(0, 0.1), f1 + 0.3 + rng.gauss(0, 0.1)) for qid, (em, f1) in theirs.items()}
    delta = paired_delta("prag", "PRAG", "rag", mine, theirs, {})
    assert delta is not None and delta.clear and delta.f1_low > 0.2 and delta.f1_low < delta.f1 < delta.f1_high
    worse = paired_delta("rag", "RAG", "prag", theirs, mine, {})
    assert worse is not None and worse.clear and worse.f1_high < -0.2 and worse.losses == delta.wins


def test_substitutions_of_one_question_resample_together():
    """Ten questions asked four ways each are ten pieces of evidence, not forty: the interval widens."""
    rng = random.Random(3)
    per_group = [rng.choice([-1.0, 1.0]) * rng.random() for _ in range(10)]
    mine = {f"q{g}-{k}": (0.0, 0.5 + per_group[g]) for g in range(10) for k in range(4)}
    theirs = {qid: (0.0, 0.5) for qid in mine}
    items = [QAItem(qid, "?", ("a",), meta={"question_group": qid.split("-")[0]}) for qid in mine]
    groups = question_groups(items)
    grouped = paired_delta("prag", "PRAG", "rag", mine, theirs, groups)
    alone = paired_delta("prag", "PRAG", "rag", mine, theirs, {})
    assert grouped is not None and alone is not None
    assert grouped.groups == 10 and alone.groups == 40 and grouped.f1 == alone.f1
    assert grouped.f1_high - grouped.f1_low > 1.5 * (alone.f1_high - alone.f1_low)


def test_rescore_against_rag_adds_the_paired_table(tmp_path):
    env = {"PRAG_HOME": str(tmp_path / "home")}
    ran = run_cli("eval", "--rescore", str(FICTIONAL), "--against", "rag", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    paired = json.loads(ran.stdout)["paired"]
    assert set(paired) == {"vanilla", "prag", "prag_combine", "dyprag", "dyprag_combine"}
    for row in paired.values():
        assert row["against"] == "rag" and row["n"] == 25 and row["wins"] + row["ties"] + row["losses"] == 25
        low, high = row["f1_ci"]
        assert low <= row["f1_delta"] <= high
    assert paired["vanilla"]["f1_ci"][1] < 0  # vanilla, with no passage, is clearly below RAG on fictional facts
    shown = run_cli("eval", "--rescore", str(FICTIONAL), "--against", "RAG", "--markdown", env=env)
    assert shown.returncode == 0 and "Paired against RAG: 25 questions" in shown.stdout and "| PRAG-combine | " in shown.stdout


def test_against_a_method_that_did_not_run_is_one_line(tmp_path):
    env = {"PRAG_HOME": str(tmp_path / "home")}
    for args, expected in (
        (("--rescore", str(FICTIONAL), "--against", "bm25"), "unknown method"),
        (("--rescore", str(FICTIONAL), "--against", "rag,prag"), "name one method"),
        (("--data", str(ROOT / "sample_corpus" / "questions.jsonl"), "--methods", "vanilla,prag", "--against", "rag"),
         "not among --methods"),
    ):
        result = run_cli("eval", *args, env=env)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2
