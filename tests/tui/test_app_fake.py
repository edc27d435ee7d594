"""The explorer's behaviour with the fast fake engine: startup, history, browser, scores,
conflicts, method switches, help, export and error handling."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

from engine.errors import InputError, ModelError
from engine.explorer import AnswerUpdate, AskRequest, PassagesChosen
from engine.methods import METHODS
from tests.tui.conftest import (
    CONFLICT_QUESTION,
    QA_QUESTION,
    RETRIEVAL_QUESTION,
    ask_and_wait,
    wait_idle,
    wait_ready,
    wait_until,
)
from tests.tui.fake_engine import FakeExplorer, fake_factory
from tui.screens.dialogs import HelpScreen
from tui.screens.questions import QuestionBrowser
from tui.widgets.methods import MethodBar
from tui.widgets.passages import PassageItem


async def test_typing_before_the_model_is_ready_runs_the_question_once_it_is(make_app):
    opened = threading.Event()

    def slow_factory(settings, progress):
        opened.wait(10)
        return FakeExplorer()

    app = make_app(slow_factory)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.main
        assert screen.question_input.has_focus
        await pilot.press(*"Who founded Velmora?", "enter")
        assert app.engine is None
        assert screen.pending == ("Who founded Velmora?", None)
        assert "Queued" in str(screen.status.query_one("#status-state").render())
        opened.set()
        await wait_ready(pilot)
        await wait_until(pilot, lambda: screen.comparison is not None, 10, "the queued question to run")
        assert screen.comparison.question == "Who founded Velmora?"
        assert len(screen.comparison.answers) == 6


async def test_up_and_down_walk_the_question_history(make_app, fake):
    app = make_app(fake())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        box = app.main.question_input
        for question in ("first question?", "second question?"):
            box.value = question
            await pilot.press("enter")
            await wait_idle(pilot)
        box.value = "a draft"
        await pilot.press("up")
        assert box.value == "second question?"
        await pilot.press("up", "up")
        assert box.value == "first question?"
        await pilot.press("down")
        assert box.value == "second question?"
        await pilot.press("down")
        assert box.value == "a draft"
    # ... and the history is kept in PRAG_HOME for the next session
    again = make_app(fake())
    assert again.history[-2:] == ["first question?", "second question?"]


async def test_browser_picks_a_question_and_answers_get_em_f1(make_app, fake):
    app = make_app(fake())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: bool(app.qa_items), 10, "the QA file")
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, QuestionBrowser)
        await pilot.press(*"velmora hall")
        assert [item.id for item in app.screen.shown] == ["sq-025"]
        await pilot.press("enter")
        await wait_idle(pilot)
        screen = app.main
        assert screen.question_input.value == QA_QUESTION
        assert screen.item is not None and screen.item.id == "sq-025"
        rag = screen.grid.card("rag")
        assert rag.score is not None and rag.score.em == 1.0 and rag.score.f1 == 1.0
        vanilla = screen.grid.card("vanilla")
        assert vanilla.score is not None and vanilla.score.em == 0.0
        assert "EM 1 F1 1.00" in str(rag.query_one(".answer-meta").render())
        # the QA item's own passage is used, not BM25
        assert [h.passage.title for h in screen.comparison.hits] == ["Velmora"]


async def test_conflict_question_marks_which_side_each_answer_follows(make_app, fake):
    app = make_app(fake())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: bool(app.qa_items), 10, "the QA file")
        item = app.find_item(CONFLICT_QUESTION)
        assert item is not None and item.conflict is not None
        app.main.pick(item)
        await wait_idle(pilot)
        cards = app.main.grid
        assert cards.card("vanilla").follows == "memory"
        assert cards.card("rag").follows == "passage"
        assert cards.card("dyprag_combine").follows == "both"
        assert "⚑" in str(app.main.views.get_tab("tab-conflict").label)
        await pilot.press("ctrl+t", "ctrl+t")
        assert app.main.views.active == "tab-conflict"


async def test_method_switches_by_key_and_mouse_decide_the_next_run(make_app):
    engine = FakeExplorer()
    app = make_app(lambda settings, progress: engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        bar = app.main.query_one(MethodBar)
        await pilot.press("tab")  # question box -> method bar
        assert bar.has_focus
        await pilot.press("3", "4")
        assert bar.enabled == frozenset(METHODS) - {"prag", "prag_combine"}
        await pilot.press("right", "space")  # cursor on 4 -> 5: DyPRAG off
        assert "dyprag" not in bar.enabled
        await pilot.click(MethodBar, offset=(18, 0))  # "● 2 RAG"
        assert "rag" not in bar.enabled
        await pilot.click(MethodBar, offset=(18, 0))
        assert "rag" in bar.enabled
        app.main.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert engine.calls[-1]["methods"] == ["vanilla", "rag", "dyprag_combine"]
        assert not app.main.grid.card("prag").display
        bar.focus()
        for key in ("1", "2", "6"):
            await pilot.press(key)
        assert bar.enabled == frozenset()
        await pilot.press("ctrl+r")
        assert engine.calls[-1]["methods"] == ["vanilla", "rag", "dyprag_combine"]  # nothing new ran
        assert app.main.comparison is not None


async def test_switched_off_passage_is_left_out_when_the_same_question_runs_again(make_app):
    engine = FakeExplorer()
    app = make_app(lambda settings, progress: engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask_and_wait(pilot, RETRIEVAL_QUESTION)
        items = app.main.passages.items
        assert len(items) == 3 and items[0].hit.passage.title == "Quistrel Dynamics"
        assert "quistrel" in items[0].hit.matched_terms
        items[1].focus()
        await pilot.press("space", "enter")
        assert not items[1].included and items[1].expanded
        await pilot.click(PassageItem, offset=(1, 0))  # the first passage's dot
        assert not items[0].included
        await pilot.click(PassageItem, offset=(1, 0))
        assert items[0].included
        assert app.main.passages_panel.border_subtitle == "1 off for the next run"
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        used = [h.passage.title for h in engine.calls[-1]["hits"]]
        assert len(used) == 2 and items[1].hit.passage.title not in used
        # a different question retrieves afresh, every passage on
        app.main.question_input.value = "Which town was founded by salt traders?"
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert len(engine.calls[-1]["hits"]) == 3


def state_text(app) -> str:
    return str(app.main.status.query_one("#status-state").render())


async def test_first_question_encodes_missing_prag_loras_with_progress_on_the_cards(make_app):
    gate = threading.Event()
    engine = FakeExplorer(encode_gate=gate)  # no PRAG LoRA yet: the fake encodes them, holding at the second passage
    app = make_app(lambda settings, progress: engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        assert app.options.encode_missing  # on by default: PRAG answers the first question
        app.main.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        second = engine.retrieve(RETRIEVAL_QUESTION)[1].passage.title
        prag = app.main.grid.card("prag")
        want = f"◌ encoding PRAG LoRAs 2/3 · {second}"
        await wait_until(pilot, lambda: prag.border_subtitle == want, 10, "the encoding progress")
        assert prag.has_class("-encoding") and app.main.running
        assert want in str(prag.query_one(".answer-head").render())
        gate.set()
        await wait_idle(pilot)
        assert engine.asks[-1].encode_missing is True
        assert [a.status for a in app.main.comparison.answers] == ["done"] * 6
        # encoded once: running it again goes straight to the answers
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert len(engine.asks) == 2 and prag.answer.status == "done" and "Done in" in state_text(app)


async def test_escape_stops_the_prag_encoding(make_app):
    engine = FakeExplorer(encode_gate=threading.Event())  # never opened: only the cancel event ends the encoding
    app = make_app(lambda settings, progress: engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        app.main.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        prag = app.main.grid.card("prag")
        await wait_until(pilot, lambda: prag.has_class("-encoding"), 10, "the encoding")
        await pilot.press("escape")
        await wait_idle(pilot, 2)
        assert "Cancelled after" in state_text(app)
        answers = {a.method: a for a in app.main.comparison.answers}
        assert "cancelled" in answers["prag"].error  # as the engine reports an encoding it stopped
        assert {answers[m].status for m in ("vanilla", "rag", "dyprag")} == {"cancelled"}


async def test_toggling_encoding_runs_the_question_again(make_app):
    gate = threading.Event()
    engine = FakeExplorer(encode_gate=gate)
    app = make_app(lambda settings, progress: engine, encode_missing=False)  # prag tui --no-encode
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        app.main.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot)
        prag = app.main.grid.card("prag")
        assert prag.answer.status == "error" and "no PRAG LoRA for 3 of 3 passages" in prag.answer.error
        assert "ctrl+p: encode PRAG LoRAs" in state_text(app)
        next(c for c in app.get_system_commands(app.main) if c.title == "Encode missing PRAG LoRAs (off)").callback()
        assert app.options.encode_missing and app.main.running
        await pilot.pause()
        assert any("running the question again" in n.message for n in app._notifications)
        await wait_until(pilot, lambda: str(prag.border_subtitle).startswith("◌ encoding PRAG LoRAs"), 10, "the encoding")
        gate.set()
        await wait_idle(pilot)
        assert len(engine.asks) == 2 and engine.asks[-1].encode_missing is True
        assert engine.asks[-1].hits is not None  # the same passages, as on screen
        assert prag.answer.status == "done" and "Done in" in state_text(app)
        assert any(c.title == "Encode missing PRAG LoRAs (on)" for c in app.get_system_commands(app.main))


async def test_norms_view_switches_module_and_layout(make_app, fake):
    from textual.widgets import Checkbox, RadioSet
    from textual_plotext import PlotextPlot

    app = make_app(fake())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        app.main.question_input.value = QA_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot)
        await pilot.press("ctrl+t")
        norms = app.main.norms
        assert app.main.views.active == "tab-norms" and not norms.has_class("-empty")
        assert "PRAG: max" in str(norms.query_one(".norms-summary").render())
        norms.query_one(RadioSet).focus()
        await pilot.press("right", "enter")  # all -> gate
        assert norms.module == "gate_proj"
        assert app.main.grid.card("prag").module == "gate_proj"
        assert "gate" in str(norms.query_one(".norms-summary").render())
        second = norms.query_one("#norms-plot-b", PlotextPlot)
        assert not second.display
        norms.query_one(Checkbox).focus()
        await pilot.press("space")
        assert not norms.overlay and second.display


async def test_export_writes_markdown_and_json_and_says_where(make_app, fake, tmp_path):
    app = make_app(fake(), export_dir=tmp_path / "out")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await pilot.press("ctrl+s")
        assert any("Nothing to export" in n.message for n in app._notifications)
        await wait_until(pilot, lambda: bool(app.qa_items), 10, "the QA file")
        app.main.question_input.value = QA_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: len(list((tmp_path / "out").glob("*"))) == 2, 10, "the export files")
        md = next((tmp_path / "out").glob("*.md"))
        data = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
        text = md.read_text()
        assert QA_QUESTION in text and "| RAG | done | saffron yellow |" in text and "| 1 | 1.00 |" in text
        assert data["question"] == QA_QUESTION and data["gold"] == ["saffron yellow", "saffron"]
        assert data["scores"]["rag"] == {"em": 1.0, "f1": 1.0}
        assert [a["method"] for a in data["answers"]] == list(METHODS)
        await wait_until(pilot, lambda: any(str(md) in n.message for n in app._notifications), 5, "the export notice")


async def test_copy_puts_answers_on_the_clipboard(make_app, fake):
    app = make_app(fake())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        app.main.question_input.value = QA_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot)
        app.main.grid.card("rag").focus()
        await pilot.press("c")
        assert app.clipboard == "saffron yellow"
        app.main.question_input.focus()
        await pilot.press("ctrl+y")
        assert app.clipboard.splitlines()[0] == "Vanilla: The town hall of Velmora is painted white"


async def test_engine_errors_become_notifications_and_the_app_keeps_running(make_app):
    engine = FakeExplorer(errors={"prag": InputError("no PRAG LoRA here", "encode it")})
    app = make_app(lambda settings, progress: engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        app.main.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot)
        prag = app.main.grid.card("prag")
        assert prag.has_class("-error") and "no PRAG LoRA here" in str(prag.query_one(".answer-text").render())
        engine.fail_with = InputError("the question is too odd", "ask another")
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert any(n.severity == "error" and "too odd" in n.message for n in app._notifications)
        engine.fail_with = RuntimeError("boom")
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert any(n.severity == "error" and "RuntimeError: boom" in n.message for n in app._notifications)
        assert app.is_running
        engine.fail_with = None
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert app.main.comparison is not None


async def test_empty_question_warns_instead_of_running(make_app, fake):
    app = make_app(fake())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await pilot.press("enter")
        assert not app.main.running and app.main.comparison is None
        assert any("Type a question" in n.message for n in app._notifications)


async def test_startup_failure_exits_with_code_2_and_one_line(make_app):
    def broken(settings, progress):
        raise ModelError("model path /nope does not exist", "pass a local Hugging Face model directory to --model")

    app = make_app(broken)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.startup_error is not None, 10, "the startup error")
    assert app.return_code == 2
    assert app.startup_error == "model path /nope does not exist; pass a local Hugging Face model directory to --model"


async def test_switching_to_a_broken_model_keeps_the_old_engine(make_app, tmp_path):
    calls = []

    def factory(settings, progress):
        calls.append(settings.model)
        if settings.model:
            raise ModelError(f"{settings.model} is not a Hugging Face model directory (no config.json)",
                             "pass the folder that holds config.json")
        return FakeExplorer()

    app = make_app(factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        first = app.engine
        app.switch("model")
        await pilot.pause()
        await pilot.press(*str(tmp_path), "enter")
        await wait_until(pilot, lambda: len(calls) == 2 and any(n.severity == "error" for n in app._notifications), 10, "the failed switch")
        assert app.engine is first and app.is_running and app.startup_error is None


async def test_help_opens_with_f1_and_question_mark_and_closes_with_escape(make_app, fake):
    app = make_app(fake())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is app.main
        await pilot.press("?")  # typed into the question box, not a help request
        assert app.main.question_input.value == "?"
        app.main.query_one(MethodBar).focus()
        await pilot.press("?")
        assert isinstance(app.screen, HelpScreen)


async def test_palette_offers_switches_toggles_export_and_theme(make_app, fake):
    app = make_app(fake())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        titles = [c.title for c in app.get_system_commands(app.main)]
        for expected in ("Switch model", "Switch corpus", "Switch translator", "Export comparison", "Theme", "Browse questions"):
            assert any(t.startswith(expected) for t in titles), expected
        assert "Toggle method: DyPRAG (on)" in titles
        toggle = next(c for c in app.get_system_commands(app.main) if c.title == "Toggle method: DyPRAG (on)")
        toggle.callback()
        assert "dyprag" not in app.main.method_bar.enabled


def test_fake_engine_asks_streams_and_cancels_like_the_real_one():
    engine = FakeExplorer()
    events = []
    comparison = engine.ask(AskRequest(QA_QUESTION, tuple(METHODS.values()), max_new_tokens=8), events.append)
    assert isinstance(events[0], PassagesChosen) and len(events[0].hits) == 3 and events[0].rerank is None
    assert all(isinstance(e, AnswerUpdate) for e in events[1:]) and any(e.delta for e in events[1:])
    assert [a.status for a in comparison.answers] == ["done"] * 6
    cancel = threading.Event()
    cancel.set()
    cancelled = engine.ask(AskRequest(QA_QUESTION, tuple(METHODS.values()), rerank="dynamic"), None, cancel)
    assert {a.status for a in cancelled.answers} == {"cancelled"}
    assert cancelled.extra["rerank"]["fallback"] is True
    assert fake_factory()(None, lambda p: None).loaded.model_id == "fake-smollm2"


async def test_injection_toggles_run_the_question_again_with_the_new_choice(make_app):
    """Recipe, merge, passage order and LoRA span from the palette reach the engine's next AskRequest at once."""
    engine = FakeExplorer()
    app = make_app(lambda settings, progress: engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        app.main.question_input.value = QA_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot)
        first = engine.asks[-1]
        assert (first.recipe, first.merge, first.order, first.lora_span) == (None, "weighted", "best-last", "all")
        assert first.scores  # a QA-file question: its gold answers are probed

        def command(prefix: str):
            return next(c for c in app.get_system_commands(app.main) if c.title.startswith(prefix)).callback

        for prefix in ("PRAG merge: weighted", "Passage order: best-last", "PRAG recipe: facts", "Combine LoRA span: all"):
            command(prefix)()
            await wait_until(pilot, lambda n=len(engine.asks): len(engine.asks) > n, 10, f"a new run after {prefix}")
            await wait_idle(pilot)
        last = engine.asks[-1]
        assert (last.merge, last.order, last.recipe, last.lora_span) == ("sum", "best-first", "reference", "question")
        assert app.options.injection_label().startswith("recipe reference · merge sum · best-first")
        assert app.options.injection_label().endswith("combine LoRA on the question")


async def test_an_expanded_passage_lists_what_its_prag_lora_learns(make_app):
    """The facts recipe's answers for that passage, as `prag eval --coverage` counts them; a recipe switch changes the list."""
    from engine.offline.encode import recipe_pairs
    from engine.offline.recipes import recipe_config

    engine = FakeExplorer()
    app = make_app(lambda settings, progress: engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask_and_wait(pilot, RETRIEVAL_QUESTION)
        item = app.main.passages.items[0]
        assert "PRAG LoRA" not in str(item.render())  # collapsed: one line
        item.focus()
        await pilot.press("enter")
        shown = str(item.render())
        pairs, made = recipe_pairs(item.hit.passage, recipe_config("facts"))
        assert "PRAG LoRA (facts recipe," in shown and pairs
        assert all(pair.answer in shown for pair in pairs)
        app.main.options = replace(app.main.options, recipe="reference")
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        item = app.main.passages.items[0]  # the same question keeps the list; the recipe is the new one
        item.expanded = True
        assert "PRAG LoRA (reference recipe, 3 pairs)" in str(item.render())


async def test_the_gold_line_says_whether_the_prag_lora_trained_on_the_answer(make_app, fake):
    """sq-025's answer (saffron yellow) is one of its passage's facts; sq-020's (Canberra) is the passage's title, never asked."""
    app = make_app(fake())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: bool(app.qa_items), 10, "the QA file")
        for qid, expected in (("sq-025", "PRAG LoRA trained on it"), ("sq-020", "PRAG LoRA never trained on it")):
            item = next(i for i in app.qa_items if i.id == qid)
            app.main.pick(item)
            await wait_idle(pilot)
            assert expected in str(app.main.gold.render()), qid
