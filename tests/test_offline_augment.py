"""`prag augment`: lenient parsing, validation, gold QA pairs, the reference layout, resuming."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from engine.corpus import make_passage
from engine.errors import ArtifactError, Cancelled
from engine.offline.augment import LLMAugmenter, augment_passages, llm_source, parse_qa_output, validate_pairs
from engine.offline.records import AugmentRecord, QAPair, load_augment, status_path
from engine.offline.sources import gold_qa_index, gold_source, light_rewrite, norm_words
from engine.qa import load_qa
from tests.conftest import assert_one_line_error
from tests.conftest import run_cli as prag

REPO = Path(__file__).resolve().parent.parent
SQUAD = REPO.parent / "shared" / "data" / "squad-dev.jsonl"
PASSAGE = ("Quistrel Dynamics is an engineering firm that builds wind-driven water pumps for small farms. "
           "The engineer Odalys Pemberforth founded the company in 1987 in the port city of Harnwick.")


def write_qa(path: Path, groups: dict[tuple[str, str], list[tuple[str, str]]]) -> Path:
    """A SQuAD-style QA JSONL: one line per question, the passage repeated on each."""
    lines = []
    for (title, text), questions in groups.items():
        for number, (question, answer) in enumerate(questions):
            lines.append(json.dumps({"id": f"{title}-{number}", "question": question, "answers": [answer],
                                     "passages": [{"title": title, "text": text}]}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GROUPS = {
    ("Quistrel Dynamics", PASSAGE): [
        ("Who founded Quistrel Dynamics?", "Odalys Pemberforth"),
        ("When was Quistrel Dynamics founded?", "1987"),
        ("In which port city was Quistrel Dynamics founded?", "Harnwick"),
        ("What does Quistrel Dynamics build?", "wind-driven water pumps"),
    ],
    ("Velmora", "Velmora is a hill town in the province of Drasketh, founded in 1638 by a guild of salt traders."): [
        ("In which province is Velmora?", "Drasketh"),
        ("When was Velmora founded?", "1638"),
        ("Who founded Velmora?", "a guild of salt traders"),
    ],
    ("Short", "The Harrow Bridge is made of red sandstone."): [
        ("What is the Harrow Bridge made of?", "red sandstone"),
    ],
}


# --- parsing and validation (no model) -------------------------------------------------------------


def test_parse_a_clean_json_list():
    raw = json.dumps([{"question": "Who founded it?", "answer": "Odalys", "full_answer": "Odalys founded it."}])
    assert parse_qa_output(f"Sure! Here it is:\n{raw}\nHope it helps.") == json.loads(raw)


def test_parse_truncated_list_with_trailing_comma_and_loose_objects():
    truncated = ('[\n {"question": "Who founded Quistrel Dynamics?", "answer": "Odalys Pemberforth", "full_answer": "x"},\n'
                 ' {"question": "When?",')
    assert parse_qa_output(truncated)[0]["answer"] == "Odalys Pemberforth"
    no_commas = '{"question": "Which city?" "answer": "Harnwick"}\n{"question": "Which year?"\n"answer": "1987"}'
    assert [p["answer"] for p in parse_qa_output(no_commas)] == ["Harnwick", "1987"]


def test_parse_question_answer_lines():
    text = "Question: Who founded Quistrel Dynamics?\n\nAnswer: Odalys Pemberforth\n\nFull-answer: She did.\n1. Q: Which year?\nA: 1987"
    pairs = parse_qa_output(text)
    assert [(p["question"], p["answer"]) for p in pairs] == [
        ("Who founded Quistrel Dynamics?", "Odalys Pemberforth"), ("Which year?", "1987")]
    assert parse_qa_output("I'm ready to help! What's the passage?") == []


def test_validation_keeps_grounded_distinct_pairs_only():
    raw = [
        {"question": "Who founded Quistrel Dynamics?", "answer": "Odalys Pemberforth", "full_answer": ""},
        {"question": "Who founded Quistrel Dynamics?", "answer": "Odalys Pemberforth"},  # repeated
        {"question": "What is the capital of France?", "answer": "Paris"},  # the prompt's example, not in the passage
        {"question": "Which year was it founded", "answer": "1987."},
        {"question": "Who?", "answer": "Harnwick"},  # not a question
        {"question": "What is the name of Quistrel Dynamics?", "answer": "Quistrel Dynamics"},  # gives itself away
        {"question": "Where was it founded?", "answer": ["Harnwick"]},
    ]
    valid, reasons = validate_pairs(raw, PASSAGE, exclude=["What is the capital of France?"])
    assert [(p.question, p.answer) for p in valid] == [
        ("Who founded Quistrel Dynamics?", "Odalys Pemberforth"), ("Which year was it founded?", "1987"),
        ("Where was it founded?", "Harnwick")]
    assert valid[0].full_answer.startswith("The engineer Odalys Pemberforth founded")  # filled from the passage
    assert len(reasons) == 4 and any("not in the passage" in r for r in reasons)


def test_light_rewrite_is_deterministic_and_keeps_names_and_numbers():
    text = "The Large Hadron Collider was built near Geneva in 2008. Many people visit the famous site."
    rewritten = light_rewrite(text)
    assert rewritten != text and rewritten == light_rewrite(text)
    for kept in ("Large Hadron Collider", "Geneva", "2008"):
        assert kept in rewritten


# --- gold QA pairs and the file ---------------------------------------------------------------------


def test_gold_pairs_grouped_by_passage_and_short_groups_recorded_as_failed(tmp_path):
    qa = write_qa(tmp_path / "qa.jsonl", GROUPS)
    out = tmp_path / "aug.json"
    passages = [make_passage(text, title) for title, text in GROUPS]
    summary = augment_passages(passages, out, "gold", gold_source(gold_qa_index(load_qa(qa))), {"qa_source": "test"})
    assert (summary.augmented, summary.failed) == (2, 1)
    items = json.loads(out.read_text(encoding="utf-8"))
    assert [set(item) for item in items] == [{"passage", "gold_rewrite", "gold_qa", "title"}] * 2
    assert [q["answer"] for q in items[0]["gold_qa"]] == ["Odalys Pemberforth", "1987", "Harnwick"]  # the first three kept
    assert all(set(q) == {"question", "answer", "full_answer"} for q in items[0]["gold_qa"])
    status = json.loads(status_path(out).read_text(encoding="utf-8"))
    assert status["failed"][0]["passage"].startswith("The Harrow Bridge") and "need 3" in status["failed"][0]["reason"]

    loaded = load_augment(out)
    assert loaded.aug_model == "gold" and [r.passage for r in loaded.records] == passages[:2]
    assert [f.passage for f in loaded.failed] == passages[2:]


def test_rerun_skips_done_and_failed_passages_unless_asked(tmp_path):
    qa = write_qa(tmp_path / "qa.jsonl", GROUPS)
    out = tmp_path / "aug.json"
    passages = [make_passage(text, title) for title, text in GROUPS]
    calls: list[str] = []
    inner = gold_source(gold_qa_index(load_qa(qa)))

    def source(passage, cancel):
        calls.append(passage.title)
        return inner(passage, cancel)

    augment_passages(passages[:1], out, "gold", source)
    summary = augment_passages(passages, out, "gold", source)
    assert calls == ["Quistrel Dynamics", "Velmora", "Short"] and summary.skipped == 1
    again = augment_passages(passages, out, "gold", source)
    assert again.skipped == 3 and len(calls) == 3
    retried = augment_passages(passages, out, "gold", source, retry_failed=True)
    assert calls[-1] == "Short" and retried.failed == 1 and len(load_augment(out).failed) == 1  # recorded once, not twice


def test_cancel_keeps_finished_passages(tmp_path):
    out = tmp_path / "aug.json"
    passages = [make_passage(f"Passage number {i} is about the river Lune.", f"P{i}") for i in range(3)]
    cancel = threading.Event()

    def source(passage, _cancel):
        cancel.set()  # the user presses Ctrl-C while the first passage is augmented
        return AugmentRecord(passage, passage.text, [QAPair("Which river is it about?", "the river Lune", "x")] * 3)

    with pytest.raises(Cancelled):
        augment_passages(passages, out, "gold", source, cancel=cancel, flush_every_s=3600)
    assert len(load_augment(out).records) == 1


def test_reference_layouts_import_as_they_are(tmp_path):
    qa = [{"question": "Who founded Quistrel Dynamics?", "answer": "Odalys Pemberforth", "full_answer": "Odalys Pemberforth did."}] * 3
    item = {"pid": 0, "passage": PASSAGE, "llama3.2-1b-instruct_rewrite": "A rewrite.", "llama3.2-1b-instruct_qa": qa}
    nested = tmp_path / "reference.json"  # the reference's data_aug file: one entry per test question
    nested.write_text(json.dumps([{"test_id": 0, "question": "q", "answer": ["a"], "passages": [PASSAGE], "augment": [item, item]}]))
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps([item]))
    for path in (nested, flat):
        aug = load_augment(path)
        assert aug.aug_model == "llama3.2-1b-instruct" and len(aug.records) == 1
        assert aug.records[0].passage.text == PASSAGE and aug.records[0].rewrite == "A rewrite." and len(aug.records[0].qa) == 3
    # and ours written in their per-question layout reads back the same
    ours = tmp_path / "ours.json"
    passage = make_passage(PASSAGE, "Quistrel Dynamics")
    augment_passages([passage], ours, "gold", lambda p, c: AugmentRecord(p, "A rewrite.", [QAPair("Who founded it?", "Odalys", "x")] * 3),
                     layout="questions")
    raw = json.loads(ours.read_text())
    assert raw[0]["augment"][0]["gold_qa"][0]["answer"] == "Odalys" and raw[0]["passages"] == [PASSAGE]
    back = load_augment(ours)
    assert back.layout == "questions" and back.records[0].passage == passage and back.records[0].rewrite == "A rewrite."
    two_models = tmp_path / "two.json"
    two_models.write_text(json.dumps([{**item, "qwen_rewrite": "r", "qwen_qa": qa}]))
    with pytest.raises(ArtifactError, match="several models"):
        load_augment(two_models)
    assert load_augment(two_models, "qwen").records[0].rewrite == "r"


def test_cli_qa_from_data_resumes_and_refuses_bad_input(tmp_path):
    qa = write_qa(tmp_path / "qa.jsonl", GROUPS)
    out = tmp_path / "aug.json"
    first = prag("augment", "--data", str(qa), "--qa-from-data", "--limit", "1", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "augmented 1 passages (0 already done, 0 failed)" in first.stdout
    second = prag("augment", "--data", str(qa), "--qa-from-data", "--out", str(out))
    assert second.returncode == 0, second.stderr
    assert "augmented 1 passages (1 already done, 1 failed)" in second.stdout and str(status_path(out)) in second.stdout
    assert_one_line_error(prag("augment", "--out", str(out)), "nothing to augment")
    assert_one_line_error(prag("augment", "--corpus", str(qa), "--qa-from-data", "--out", str(out)), "--qa-from-data needs --data")
    assert_one_line_error(prag("augment", "--data", str(tmp_path / "nope.jsonl"), "--qa-from-data", "--out", str(out)), "does not exist")
    assert_one_line_error(prag("augment", "--data", str(qa), "--qa-from-data", "--rewrite", "fancy", "--out", str(out)), "--rewrite")


@pytest.mark.skipif(not SQUAD.is_file(), reason="needs ../shared/data/squad-dev.jsonl")
def test_squad_paragraphs_have_several_gold_questions(tmp_path):
    rows = SQUAD.read_text(encoding="utf-8").splitlines()[:400]
    sample = tmp_path / "squad-head.jsonl"
    sample.write_text("\n".join(rows) + "\n", encoding="utf-8")
    index = gold_qa_index(load_qa(sample))
    assert len(index) >= 20 and all(len(questions) >= 3 for questions in list(index.values())[:20])


# --- the LLM source: a scripted generator (exact), then the real model (one short try) ---------------


class ScriptedAugmenter(LLMAugmenter):
    """`LLMAugmenter` whose generator replies with fixed text: QA replies in turn, then `rewrite_reply`."""

    def __init__(self, qa_replies: list[str], rewrite_reply: str = "", **kwargs) -> None:
        super().__init__(loaded=None, **kwargs)  # type: ignore[arg-type]  # never generates for real
        self.qa_replies = list(qa_replies)
        self.rewrite_reply = rewrite_reply
        self.prompts: list[str] = []

    def _generate(self, messages, attempt, cancel, stop=None) -> str:
        self.prompts.append(messages[-1]["content"])
        if stop is None:
            return self.rewrite_reply
        return self.qa_replies[min(attempt, len(self.qa_replies) - 1)]


GROUNDED_REPLY = json.dumps([
    {"question": "Who founded Quistrel Dynamics?", "answer": "Odalys Pemberforth", "full_answer": "Odalys Pemberforth founded it."},
    {"question": "What is the capital of France?", "answer": "Paris", "full_answer": "Paris."},  # the prompt's example: dropped
    {"question": "In which year was the firm founded", "answer": "1987."},
    {"question": "What does the firm build for small farms?", "answer": "pumps on wheels"},  # not in the passage: dropped
    {"question": "In which port city was the firm founded?", "answer": "Harnwick"},
])


def test_scripted_llm_pairs_are_exactly_the_grounded_ones(tmp_path):
    passage = make_passage(PASSAGE, "Quistrel Dynamics")
    augmenter = ScriptedAugmenter([GROUNDED_REPLY], attempts=3)
    pairs, reason = augmenter.qa_pairs(passage)
    assert reason == ""
    assert [(p.question, p.answer) for p in pairs] == [
        ("Who founded Quistrel Dynamics?", "Odalys Pemberforth"),
        ("In which year was the firm founded?", "1987"),
        ("In which port city was the firm founded?", "Harnwick"),
    ]
    assert pairs[1].full_answer == "The engineer Odalys Pemberforth founded the company in 1987 in the port city of Harnwick."
    assert len(augmenter.prompts) == 1 and augmenter.prompts[0].endswith(PASSAGE)  # three valid pairs: no second attempt

    rewrite = "Quistrel Dynamics, a firm of engineers, makes wind-driven water pumps; Odalys Pemberforth started it in 1987 in Harnwick."
    out = tmp_path / "aug.json"
    summary = augment_passages([passage], out, "scripted", llm_source(ScriptedAugmenter([GROUNDED_REPLY], rewrite, attempts=1)))
    assert (summary.augmented, summary.failed) == (1, 0)
    record = load_augment(out).records[0]
    assert record.rewrite == rewrite and [p.answer for p in record.qa] == ["Odalys Pemberforth", "1987", "Harnwick"]


def test_scripted_llm_without_enough_pairs_is_a_failed_passage_with_its_reason(tmp_path):
    passage = make_passage(PASSAGE, "Quistrel Dynamics")
    replies = ["I'm ready to help! What's the passage?",
               json.dumps([{"question": "Who founded Quistrel Dynamics?", "answer": "Odalys Pemberforth"}])]
    augmenter = ScriptedAugmenter(replies, attempts=2)
    pairs, reason = augmenter.qa_pairs(passage)
    assert [p.answer for p in pairs] == ["Odalys Pemberforth"]
    assert reason == "1 valid QA pairs after 2 attempts (need 3); most common problem: no QA pairs could be parsed"

    out = tmp_path / "aug.json"
    summary = augment_passages([passage], out, "scripted", llm_source(ScriptedAugmenter(replies, attempts=2)))
    assert (summary.augmented, summary.failed) == (0, 1)
    status = json.loads(status_path(out).read_text(encoding="utf-8"))
    assert [(f["passage"], f["reason"]) for f in status["failed"]] == [(PASSAGE, reason)]
    assert load_augment(out).records == []


@pytest.mark.model
def test_llm_augmenter_returns_grounded_pairs_or_records_why_not(loaded, tmp_path):
    augmenter = LLMAugmenter(loaded, attempts=1, max_new_tokens=160)
    passage = make_passage(PASSAGE, "Quistrel Dynamics")
    out = tmp_path / "aug.json"
    summary = augment_passages([passage], out, "smollm2", llm_source(augmenter, rewrite="light"))
    aug = load_augment(out)
    assert summary.augmented + summary.failed == 1
    if summary.augmented:  # what came back must hold up against the passage
        (record,) = aug.records
        assert len(record.qa) == 3 and not aug.failed
        for pair in record.qa:
            answer = f" {norm_words(pair.answer)} "
            assert answer.strip() and answer in f" {norm_words(PASSAGE)} ", pair  # grounded in the passage
            assert pair.question.endswith("?") and answer not in f" {norm_words(pair.question)} ", pair
            assert answer in f" {norm_words(pair.full_answer)} ", pair
        assert len({norm_words(p.question) for p in record.qa}) == 3
    else:  # or the passage is recorded as failed, with a reason someone can act on
        (failed,) = aug.failed
        assert failed.passage == passage and "valid QA pairs after 1 attempts (need 3)" in failed.reason
        status = json.loads(status_path(out).read_text(encoding="utf-8"))
        assert [f["reason"] for f in status["failed"]] == [failed.reason]
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):
        augmenter.qa_pairs(passage, cancelled)
