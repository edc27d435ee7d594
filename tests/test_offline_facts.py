"""The 'facts' QA pairs and the named encode recipes: coverage of a passage's facts, no leaks, stable store keys."""

from __future__ import annotations

import pytest

from engine.corpus import load_corpus, make_passage
from engine.errors import InputError
from engine.offline.cloze import sentences
from engine.offline.facts import fact_pairs, resolve_opening, spans
from engine.offline.recipes import DEFAULT_RECIPE, RECIPES, recipe_config, recipe_name
from engine.store import EncodeConfig

PASSAGE = make_passage(
    "Velmora is a hill town in the province of Drasketh, founded in 1638 by a guild of salt traders. "
    "Its town hall is painted a deep saffron yellow, and the council gathers there every Thursday evening. "
    "Velmora's best-known export is a smoked pear brandy that locals call kessivane.",
    "Velmora",
)


def test_every_sentence_and_every_salient_span_is_asked_both_ways():
    pairs = fact_pairs(PASSAGE)
    answers = {pair.answer for pair in pairs}
    # names, numbers, what follows "call", and the end of a clause: every fact of the passage
    assert {"Drasketh", "1638", "salt traders", "saffron yellow", "kessivane"} <= answers
    assert {pair.full_answer for pair in pairs} >= {resolve_opening(s, "Velmora") for s in sentences(PASSAGE.text)}
    for answer in answers:
        asked = [pair.question for pair in pairs if pair.answer == answer]
        assert any("___" in q for q in asked) and any(q.endswith("?") and (" what" in q or " which " in q) for q in asked)
    for pair in pairs:
        assert pair.answer not in pair.question  # the blank hides the answer
        assert pair.answer.lower() != "velmora"  # the passage's subject is context, not a fact to ask for


def test_a_pronoun_opening_reads_as_the_title():
    assert resolve_opening("Its town hall is painted yellow.", "Velmora") == "Velmora's town hall is painted yellow."
    assert resolve_opening("It was founded in 1638.", "Velmora") == "Velmora was founded in 1638."
    assert resolve_opening("Itself a town.", "Velmora") == "Itself a town."  # a word, not the pronoun
    assert resolve_opening("It was founded in 1638.", "") == "It was founded in 1638."


def test_spans_skip_the_title_repeats_and_long_runs():
    sentence = "Velmora trades with Velmora and Port Imbrel, and with Port Imbrel again."
    found = [sentence[a:b] for a, b in spans(sentence, "Velmora")]
    assert found.count("Port Imbrel") == 1 and "Velmora" not in found


def test_every_sample_passage_gets_pairs():
    """No passage of the sample corpus is left without facts to store (the on-demand encoder would fail on it)."""
    counts = [len(fact_pairs(p)) for p in load_corpus(None)]
    assert min(counts) >= 4, counts


def test_recipes_by_name():
    assert recipe_config("reference") == EncodeConfig()
    assert EncodeConfig().key() == "r2-a32-e1-e4d73183"  # the reference store folder keeps its name
    facts = recipe_config(DEFAULT_RECIPE)
    assert DEFAULT_RECIPE == "facts" and facts.qa == "facts" and facts.layout == "question" and facts.loss_on == "answer"
    assert facts.key() != EncodeConfig().key()
    assert recipe_name(facts) == "facts" and recipe_name(EncodeConfig(epochs=3)) is None
    assert facts.first_layer(30) == int(facts.layers_from * 30) and facts.first_layer(1) == 0
    with pytest.raises(InputError, match="unknown encode recipe 'fast'.*") as caught:
        recipe_config("fast")
    assert all(name in caught.value.hint for name in RECIPES)


def test_colours_and_unnamed_subjects_are_facts_and_a_blank_has_one_answer():
    passage = make_passage(
        "The biscuits are sold in distinctive cobalt blue tins decorated with a running hare. "
        "A bronze otter statue sits on the parapet at the midpoint of the bridge. "
        "The fair is held every year on the ninth of October, since 1899.",
        "Tindlewick",
    )
    pairs = fact_pairs(passage)
    asked = {pair.answer: [p.question for p in pairs if p.answer == pair.answer] for pair in pairs}
    assert "cobalt blue" in asked and any("what colour tins" in q for q in asked["cobalt blue"])
    subject = asked["bronze otter statue"]
    assert any(q.endswith("What sits on the parapet at the midpoint of the bridge?") for q in subject)
    # the date is asked whole: "October" alone would be a second answer to the same blank
    assert "the ninth of October" in asked and "October" not in asked
    assert "1899" in asked and "since 1899" not in asked


def test_long_passages_train_on_pairs_spread_over_them(loaded):
    from dataclasses import replace

    from engine.offline.encode import spread, training_batches
    from engine.offline.records import AugmentRecord

    assert spread(list(range(10)), 4) == [0, 3, 6, 9] and spread([1, 2], 5) == [1, 2]
    long = make_passage(" ".join(f"The mill at Brask{i} was rebuilt in {1700 + i} by the mason Odo Quell{i}." for i in range(12)), "Mills")
    record = AugmentRecord(long, long.text, fact_pairs(long))
    capped = replace(recipe_config("facts"), max_qa=8)
    assert len(record.qa) > 8
    rows = sum(b.input_ids.shape[0] for b in training_batches(loaded.tokenizer, record, capped))
    assert rows == 8
    assert capped.key() != recipe_config("facts").key() and EncodeConfig().key().endswith(EncodeConfig(max_qa=0).key()[-8:])


def asked(text: str, title: str) -> tuple[list, dict[str, str]]:
    """A passage's fact pairs, and question -> answer."""
    pairs = fact_pairs(make_passage(text, title))
    return pairs, {pair.question: pair.answer for pair in pairs}


def test_questions_use_the_words_people_ask_with():
    pairs, questions = asked(
        "Tallowmark is a board game invented in 1953 by the schoolteacher Ephraim Dolloway. "
        "Halvorsk Airways is an airline with its main hub at Pennequin Airport. "
        "The light was tended for forty years by Agnes Wendlecombe. "
        "At the end of the night, the oldest baker crowns a Tide Warden.",
        "Tallowmark",
    )
    # who made the subject, question word first, once (one answer per question)
    assert questions.get("Which schoolteacher invented Tallowmark?") == "Ephraim Dolloway"
    assert sum(q.startswith("Which schoolteacher") for q in questions) == 1
    # a name's own kind word, and "whom" for a person after "by"
    assert any(q.endswith("main hub at which airport?") and a == "Pennequin Airport" for q, a in questions.items())
    assert any(q.endswith("by whom?") and a == "Agnes Wendlecombe" for q, a in questions.items())
    # how a sentence begins is not a fact of it
    assert "night" not in {pair.answer for pair in pairs}


def test_a_persons_description_is_asked_as_who_they_are():
    pairs, questions = asked(
        "Henry Master Feilden (21 February 1818 – 5 September 1875) was an English Conservative Party politician. "
        "The Hennerby Span is a stone bridge built in 1702. "
        "Ilvane Morrowcroft was a composer who wrote for the harp.",
        "Henry Feilden",
    )
    assert pairs[0].question == "Who was Henry Master Feilden?"  # the first description leads, so a spread keeps it
    assert questions["Who was Henry Master Feilden?"] == "English Conservative Party politician"
    assert questions["Who was Ilvane Morrowcroft?"] == "composer"  # not "composer who wrote"
    assert not any("Hennerby Span?" in q for q in questions)  # a bridge's description draws every question on it


def test_an_example_keeps_a_window_of_words_around_its_blank():
    from engine.offline.facts import WORDS_AFTER, WORDS_BEFORE

    row = " ".join(f"cell{i}" for i in range(150))
    passage = make_passage(f"The ledger lists {row} Orrin Bask {row}", "Ledger")
    pairs = [pair for pair in fact_pairs(passage) if pair.answer == "Orrin Bask"]
    assert pairs
    for pair in pairs:
        assert len(pair.question.split()) <= WORDS_BEFORE + WORDS_AFTER + 8
        assert "cell149" in pair.question and "cell0 " in pair.question  # the neighbours, not the row's far ends
        assert "cell100" not in pair.question
