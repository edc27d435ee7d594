"""Cloze augmentation (`prag augment --qa-cloze`) and the passage selectors --questions / --sample."""

from __future__ import annotations

import json

from engine.corpus import make_passage
from engine.offline.cloze import cloze_pairs, end_span, name_span, sentences
from engine.offline.records import load_augment
from engine.offline.sources import passages_from, sample_passages
from tests.test_offline_augment import GROUPS, PASSAGE, assert_one_line_error, prag, write_qa


def test_cloze_pairs_blank_spans_the_passage_states() -> None:
    passage = make_passage(PASSAGE, "Quistrel Dynamics")
    pairs = cloze_pairs(passage, max_qa=3)
    assert len(pairs) == 3
    for pair in pairs:
        sentence = pair.full_answer
        assert sentence in PASSAGE and pair.answer in sentence
        # The question is the sentence with exactly the answer blanked out.
        blanked = pair.question.split("what fills the blank? ", 1)[1]
        assert blanked.replace("___", pair.answer, 1) == sentence
        assert "about Quistrel Dynamics" in pair.question
    answers = [p.answer for p in pairs]
    assert answers[0] == "for small farms"  # the first sentence's ending ...
    assert answers[1] == "Quistrel Dynamics"  # ... then its last name (the only one)
    assert "Harnwick" in answers[2]  # the second sentence's ending holds the city
    assert len(set(answers)) == 3


def test_name_span_skips_openers_and_prefers_later_names() -> None:
    sentence = "The Senate met in Harnwick in 1987."
    start, end = name_span(sentence)
    assert sentence[start:end] == "1987"
    only_opener = "He said it was over."
    assert name_span(only_opener) is None
    start, end = end_span(only_opener)
    assert only_opener[start:end] == "it was over"
    assert sentences("Short one. This sentence has enough words to count.") == ["This sentence has enough words to count."]


def test_cli_cloze_needs_no_model_and_selects_passages(tmp_path) -> None:
    qa = write_qa(tmp_path / "qa.jsonl", GROUPS)
    out = tmp_path / "cloze.json"
    run = prag("augment", "--data", str(qa), "--qa-cloze", "--min-qa", "1", "--questions", "4", "--out", str(out))
    assert run.returncode == 0, run.stderr
    aug = load_augment(out)
    assert aug.aug_model == "cloze" and [r.passage.title for r in aug.records] == ["Quistrel Dynamics"]  # 4 questions, one passage
    assert all(pair.answer in r.passage.text for r in aug.records for pair in r.qa)
    status = json.loads((tmp_path / "cloze.status.json").read_text())
    assert status["info"]["qa_source"].startswith("cloze")
    assert_one_line_error(prag("augment", "--data", str(qa), "--qa-cloze", "--qa-from-data", "--out", str(out)), "pass one of them")
    assert_one_line_error(prag("augment", "--data", str(qa), "--qa-cloze", "--rewrite", "llm", "--out", str(out)), "light rewrite")
    assert_one_line_error(prag("augment", "--data", str(qa), "--qa-cloze", "--sample", "1", "--limit", "1", "--out", str(out)),
                          "pass one of them")
    assert_one_line_error(prag("augment", "--corpus", str(qa), "--qa-cloze", "--questions", "2", "--out", str(out)),
                          "--questions needs --data")


def test_sample_is_seeded_and_keeps_file_order(tmp_path) -> None:
    passages = [make_passage(f"Passage number {i} says something.", f"T{i}") for i in range(50)]
    first = sample_passages(passages, 10, seed=3)
    assert first == sample_passages(passages, 10, seed=3) and first != sample_passages(passages, 10, seed=4)
    positions = [passages.index(p) for p in first]
    assert positions == sorted(positions) and len(set(positions)) == 10 and positions[-1] > 10  # spread, not the head
    assert sample_passages(passages, 99) == passages
    qa = write_qa(tmp_path / "qa.jsonl", GROUPS)
    assert [p.title for p in passages_from(None, qa, questions=5)] == ["Quistrel Dynamics", "Velmora"]


def test_skip_questions_holds_out_every_passage_the_first_questions_read(tmp_path) -> None:
    qa = write_qa(tmp_path / "qa.jsonl", GROUPS)
    # Questions 3 and 4 share Quistrel Dynamics' passage with the two skipped ones: it stays out.
    assert [p.title for p in passages_from(None, qa, skip_questions=2)] == ["Velmora", "Short"]
    assert [p.title for p in passages_from(None, qa, questions=1, skip_questions=4)] == ["Velmora"]
    out = tmp_path / "facts.json"
    run = prag("augment", "--data", str(qa), "--qa-facts", "--min-qa", "1", "--skip-questions", "4", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert [r.passage.title for r in load_augment(out).records] == ["Velmora", "Short"]
    assert_one_line_error(prag("augment", "--corpus", str(qa), "--qa-facts", "--skip-questions", "2", "--out", str(out)),
                          "--skip-questions needs --data")
    assert_one_line_error(prag("augment", "--data", str(qa), "--qa-facts", "--skip-questions", "-1", "--out", str(out)),
                          "--skip-questions cannot be negative")
