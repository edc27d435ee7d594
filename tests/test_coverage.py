"""Coverage: scores split by whether the PRAG LoRAs were trained on the gold answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.corpus import make_passage
from engine.evaluate.coverage import answer_trained, trained_answers
from engine.offline.recipes import recipe_config
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
FICTIONAL = ROOT / "assets" / "results" / "fictional.record.jsonl"


def test_an_answer_is_trained_when_its_words_sit_in_a_training_answer():
    trained = [("argentine", "composer", "jonah", "hill"), ("tv",), ("1996",)]
    assert answer_trained(["Jonah Hill"], trained)
    assert answer_trained(["nobody", "the TV"], trained)  # any alias; articles and case normalized away
    assert not answer_trained(["Hill Jonah"], trained)  # words in order
    assert not answer_trained(["1"], trained) and not answer_trained([""], trained)  # words, not characters


def test_the_trained_answers_are_the_recipes_pairs_of_the_passage():
    text = " ".join(f"In {1700 + i} the guild of Orrel Vane{i} built a granary at Pellow Reach{i}." for i in range(30))
    passage = make_passage(text, "Orrel guild")
    facts = recipe_config("facts")
    answers = trained_answers(passage, facts)
    assert len(answers) == facts.max_qa  # a long passage trains on at most max_qa pairs
    assert ("1700",) in answers  # the first fact is kept by the spread
    assert len(trained_answers(passage, recipe_config("reference"))) == 3  # the reference's three cloze pairs


def test_rescore_with_coverage_splits_every_method(tmp_path):
    env = {"PRAG_HOME": str(tmp_path / "home")}
    ran = run_cli("eval", "--rescore", str(FICTIONAL), "--coverage", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    coverage = json.loads(ran.stdout)["coverage"]
    assert coverage["prag_lora"] == recipe_config("facts").key()
    assert set(coverage["methods"]) == {"vanilla", "rag", "prag", "prag_combine", "dyprag", "dyprag_combine"}
    prag = coverage["methods"]["prag"]
    assert prag["covered"]["n"] + prag["not_covered"]["n"] == 25
    assert prag["covered"]["n"] >= 20  # the facts pairs ask nearly every fictional fact the questions ask


def test_coverage_without_a_matching_recipe_is_one_line(tmp_path):
    env = {"PRAG_HOME": str(tmp_path / "home")}
    lines = FICTIONAL.read_text().splitlines()
    header = json.loads(lines[0])
    header["settings"]["prag_lora"] = "r8-a16-e5-00000000"
    header["data_path"] = str(ROOT / header["data_path"])
    other = tmp_path / "other.record.jsonl"
    other.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    for args, expected in (
        (("--rescore", str(other), "--coverage"), "not those of a recipe of this version"),
        (("--data", str(ROOT / "sample_corpus" / "questions.jsonl"), "--methods", "vanilla,rag", "--coverage"),
         "--coverage is about PRAG LoRAs"),
    ):
        result = run_cli("eval", *args, env=env)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_coverage_without_the_records_corpus_is_one_line(tmp_path):
    """A record made with --corpus names it by a relative path: from elsewhere, no passage may silently count as untrained."""
    lines = FICTIONAL.read_text().splitlines()
    header = json.loads(lines[0])
    header["data_path"] = str(ROOT / header["data_path"])
    moved = tmp_path / "moved.record.jsonl"
    moved.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    result = run_cli("eval", "--rescore", str(moved), "--coverage", env={"PRAG_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert result.returncode == 2 and "in neither the data file nor the corpus" in result.stderr, result.stderr


@pytest.mark.model
def test_coverage_on_a_run_matches_coverage_of_its_record(tmp_path):
    """`--coverage` on a live run (encoding its LoRAs) gives what `--rescore --coverage` gives for its record."""
    env = {"PRAG_HOME": str(tmp_path / "home")}
    record = tmp_path / "run.record.jsonl"
    ran = run_cli("eval", "--data", ROOT / "sample_corpus" / "questions.jsonl", "--group", "fictional", "--limit", "2",
                  "--corpus", ROOT / "sample_corpus" / "passages.jsonl", "--top-k", "1", "--methods", "vanilla,prag",
                  "--max-new-tokens", "4", "--no-probes", "--out", tmp_path / "eval", "--record", record, "--coverage", "--json",
                  env=env, timeout=600)
    assert ran.returncode == 0, ran.stderr
    live = json.loads(ran.stdout)["coverage"]
    again = run_cli("eval", "--rescore", record, "--coverage", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["coverage"] == live
    assert live["prag_lora"] == recipe_config("facts").key() and live["methods"]["prag"]["covered"]["n"] == 2
