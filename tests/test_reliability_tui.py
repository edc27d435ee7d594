"""The explorer under abuse, with the deterministic fake engine (tests/tui/fake_engine.py):

- 1,000 random key presses and terminal resizes raise nothing, fail no worker, and leave an
  app that still answers a question correctly;
- cancelling mid-stream and asking again at once, over and over, ends with every answer card
  in a final state that matches the latest question, on screen as in the data;
- the explorer's footer does not redraw behind a dialog (a burst of such redraws once kept the app
  busy for good), and shows the right keys when the dialog closes.
"""

from __future__ import annotations

import asyncio
import random
import threading

from textual import events
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from engine.config import load_settings
from engine.methods import METHODS
from tests.tui.conftest import CONFLICT_QUESTION, QA_QUESTION, RETRIEVAL_QUESTION, wait_idle, wait_ready, wait_until
from tests.tui.fake_engine import CANNED, DEFAULT_ANSWERS, FakeExplorer

KEYS = [
    *"abcdefghijklmnopqrstuvwxyz", *"0123456789", "space", "full_stop", "comma", "question_mark", "minus",
    "enter", "escape", "tab", "shift+tab", "up", "down", "left", "right", "home", "end", "pageup", "pagedown",
    "backspace", "delete", "f1", "ctrl+r", "ctrl+t", "ctrl+o", "ctrl+s", "ctrl+y", "ctrl+l", "ctrl+g",
]
"""Everything a user might press, except quitting (ctrl+q, ctrl+c) and the command palette (ctrl+p),
whose "Quit" entry random typing would find."""
CHARACTERS = {"space": " ", "full_stop": ".", "comma": ",", "question_mark": "?", "minus": "-"}
SIZES = [(80, 24), (120, 40), (100, 30), (170, 45), (200, 60), (60, 20), (40, 12), (20, 8)]
"""From the supported 80x24 upward, and smaller ones that must not crash either."""


def key_event(key: str) -> events.Key:
    """The event a terminal sends for `key` (what `Pilot.press` posts, without its idle wait per key)."""
    return events.Key(key, key if len(key) == 1 else CHARACTERS.get(key))


def make_app(engine, tmp_path):
    from tui.app import PragApp

    return PragApp(load_settings(), engine_factory=lambda settings, progress: engine, cursor_blink=False,
                   export_dir=tmp_path / "exports", remember_history=False)


def failed_workers(messages: list) -> list[str]:
    return [f"{m.worker.name}: {m.worker.error!r}" for m in messages
            if isinstance(m, Worker.StateChanged) and m.state == WorkerState.ERROR]


def expected_answer(question: str, method: str) -> str:
    return CANNED.get(question.lower(), DEFAULT_ANSWERS)[method]


async def test_a_thousand_random_keys_and_resizes_raise_nothing(tmp_path):
    rng = random.Random(20240607)
    engine = FakeExplorer(step_delay=0.002)  # runs overlap the keys that follow them
    app = make_app(engine, tmp_path)
    messages: list = []
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: bool(app.qa_items), 10, "the QA file")
        # Keys arrive as from a fast typist: about 2 ms apart, with the app catching up every 20 events
        # (Pilot.press would wait for the app to go idle after each key: 60 ms, a minute for the lot).
        done = []
        for index in range(1000):
            if rng.random() < 0.05:
                size = rng.choice(SIZES)
                done.append(f"resize {size}")
                await pilot.resize_terminal(*size)
            else:
                key = rng.choice(KEYS)
                done.append(key)
                app.post_message(key_event(key))
                await asyncio.sleep(0.002)
            if index % 20 == 19:
                await pilot.pause()
                assert app.is_running, f"the app stopped after {done[-20:]}"
        await pilot.pause()
        assert failed_workers(messages) == []
        assert len(engine.calls) > 5, "the random keys hardly ran anything; the test is not exercising runs"

        # ... and it still works: back to the explorer at a normal size, ask, get the right answers.
        await pilot.resize_terminal(120, 40)
        for _ in range(5):
            if app.screen is app.main:
                break
            await pilot.press("escape")
        assert app.screen is app.main
        await wait_idle(pilot)
        screen = app.main
        screen.action_set_rerank("none")  # ctrl+g may have switched dynamic reranking on
        for name in METHODS:
            if name not in screen.method_bar.enabled:
                screen.toggle_method(name)
        screen.question_input.focus()
        screen.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.comparison is not None and screen.comparison.question == RETRIEVAL_QUESTION,
                         20, "the final question")
        await wait_idle(pilot)
        for answer in screen.comparison.answers:
            assert answer.status == "done" and answer.text == expected_answer(RETRIEVAL_QUESTION, answer.method), answer
    assert app.return_code in (None, 0)
    assert failed_workers(messages) == []


def assert_final_and_matching(screen, question: str) -> None:
    """Every card of the run is final (done) and shows this question's answer, in the data and on screen."""
    assert screen.comparison is not None and screen.comparison.question == question
    assert not screen.running
    assert [m.name for m in screen.run_methods] == list(METHODS)
    for method in METHODS:
        card = screen.grid.card(method)
        want = expected_answer(question, method)
        assert card.answer is not None and card.answer.status == "done", (method, card.answer)
        assert card.answer.text == want, (method, card.answer.text, want)
        assert card.has_class("-done") and not card.has_class("-generating") and not card.has_class("-cancelled"), method
        assert str(card.query_one(".answer-text", Static).render()) == want, method
    assert "Done" in str(screen.status.query_one("#status-state").render())


async def test_cancel_mid_stream_then_ask_again_at_once_leaves_a_consistent_screen(tmp_path):
    gate = threading.Event()
    engine = FakeExplorer(step_delay=0.15, gate=gate)  # a run streams for up to 1.2 s
    app = make_app(engine, tmp_path)
    messages: list = []
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: bool(app.qa_items), 10, "the QA file")
        screen = app.main
        box = screen.question_input

        def streaming() -> bool:
            return any(a is not None and a.status == "generating" and a.text for a in screen.answers)

        # First round, deterministic: the run is held after its first words, so the cancelled
        # run is still winding down when the next one starts.
        box.value = QA_QUESTION
        await pilot.press("enter")
        await wait_until(pilot, streaming, 10, "the first words")
        await pilot.press("escape")
        box.value = CONFLICT_QUESTION
        await pilot.press("enter")
        gate.set()
        await wait_idle(pilot)
        assert_final_and_matching(screen, CONFLICT_QUESTION)

        # Then many rounds at random moments of the stream, alternating the two questions.
        rng = random.Random(11)
        questions = [QA_QUESTION, CONFLICT_QUESTION]
        last = CONFLICT_QUESTION
        for round_index in range(12):
            box.value = questions[round_index % 2]
            await pilot.press("enter")
            await wait_until(pilot, streaming, 10, "the stream")
            await pilot.pause(rng.random() * 0.3)
            await pilot.press("escape")
            last = questions[(round_index + 1) % 2]
            box.value = last
            await pilot.press("enter")  # at once: no pause between cancel and the new question
        await wait_idle(pilot)
        assert engine.calls[-1]["question"] == last
        assert_final_and_matching(screen, last)
    assert failed_workers(messages) == []


async def test_the_footer_waits_behind_a_dialog_and_is_right_when_it_closes(tmp_path):
    from textual.widgets._footer import FooterKey

    from tui.widgets.footer import KeyFooter

    app = make_app(FakeExplorer(), tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: bool(app.qa_items), 10, "the QA file")
        screen = app.main
        footer = screen.query_one(KeyFooter)

        def actions() -> set[str]:
            return {key.action for key in footer.query(FooterKey)}

        await wait_until(pilot, lambda: bool(actions()), 10, "the footer's first keys")
        assert "cancel" not in actions()
        app.action_browse_questions()
        await wait_until(pilot, lambda: app.screen is not screen, 5, "the question browser")
        await pilot.pause()
        keys_before = list(footer.query(FooterKey))
        assert keys_before
        for _ in range(200):  # a run starting and ending, again and again, behind the dialog
            screen.running = not screen.running
        screen.running = True
        await pilot.pause(0.2)
        assert list(footer.query(FooterKey)) == keys_before  # not one redraw while hidden
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen, 5, "the explorer")
        await wait_until(pilot, lambda: "cancel" in actions(), 5, "Cancel in the footer")
        screen.running = False
        await wait_until(pilot, lambda: "cancel" not in actions(), 5, "Cancel gone from the footer")
