"""The explorer driven like a user, on the real engine with the embedded model and few
new tokens: type, run, six finished columns, switch methods, cancel mid-stream or
mid-rerank, ask again, export."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import pytest

from engine.config import load_settings
from engine.rerank import LLMReranker
from tests.tui.conftest import QA_QUESTION, RETRIEVAL_QUESTION, factory_of, wait_idle, wait_ready, wait_until
from tui.series import adapter_norm_series

pytestmark = pytest.mark.model

FINISHED = {"done", "cancelled", "error"}


def settings(tokens: int):
    return load_settings({"max_new_tokens": tokens})


async def test_type_run_and_six_columns_finish(make_app, real_explorer):
    """Nothing encoded, no translator (as for a model without a shipped one): the four parametric rows explain why."""
    app = make_app(factory_of(real_explorer), settings=settings(6))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await pilot.press(*"Who founded Velmora?", "enter")
        await wait_until(pilot, lambda: app.main.comparison is not None, 120, "the answers")
        cards = app.main.grid.cards
        assert all(card.display for card in cards)
        assert {card.method.name: card.answer.status for card in cards} == {
            "vanilla": "done", "rag": "done", "prag": "error", "prag_combine": "error", "dyprag": "error", "dyprag_combine": "error",
        }
        assert app.main.grid.card("rag").answer.tokens > 0
        assert "no PRAG LoRA" in app.main.grid.card("prag").answer.error
        assert "no translator" in app.main.grid.card("dyprag").answer.error
        assert [item.hit.passage.title for item in app.main.passages.items][0] == "Velmora"
        assert "Done in" in str(app.main.status.query_one("#status-state").render())


async def test_six_methods_generate_then_switches_decide_the_next_run(make_app, seeded_explorer):
    app = make_app(factory_of(seeded_explorer), settings=settings(4))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        app.main.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot, 120)
        answers = app.main.comparison.answers
        assert [a.status for a in answers] == ["done"] * 6
        assert all(a.tokens > 0 for a in answers)
        assert set(adapter_norm_series(answers)) == {"PRAG", "DyPRAG"}
        assert app.main.grid.card("prag").has_class("-norms")
        # switch PRAG-combine and DyPRAG-combine off, ask again
        app.main.method_bar.focus()
        await pilot.press("4", "6")
        app.main.question_input.focus()
        await pilot.press("enter")
        await wait_idle(pilot, 120)
        assert [a.method for a in app.main.comparison.answers] == ["vanilla", "rag", "prag", "dyprag"]
        assert not app.main.grid.card("prag_combine").display


async def test_escape_cancels_mid_stream_and_keeps_partial_answers(make_app, seeded_explorer):
    app = make_app(factory_of(seeded_explorer), settings=settings(64))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        app.main.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        screen = app.main

        def streaming() -> bool:
            return any(a is not None and a.status == "generating" and a.tokens >= 1 for a in screen.answers)

        await wait_until(pilot, streaming, 120, "the first tokens")
        await pilot.press("escape")
        await wait_idle(pilot, 60)
        answers = screen.comparison.answers
        assert "cancelled" in {a.status for a in answers}
        assert all(a.status in FINISHED for a in answers)
        assert any(a.status == "cancelled" and a.text for a in answers), "partial text is kept"
        assert all(a.tokens < 64 for a in answers)
        assert "Cancelled" in str(screen.status.query_one("#status-state").render())
        assert screen.grid.card(next(a.method for a in answers if a.status == "cancelled")).has_class("-cancelled")


async def test_a_new_question_cancels_the_old_one(make_app, seeded_explorer):
    app = make_app(factory_of(seeded_explorer), settings=settings(64))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        screen = app.main
        screen.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        await wait_until(pilot, lambda: any(a is not None and a.tokens >= 1 for a in screen.answers), 120, "the first tokens")
        first_worker = screen._worker
        screen.options = replace(screen.options, max_new_tokens=4)
        screen.question_input.value = QA_QUESTION
        await pilot.press("enter")
        await wait_until(pilot, lambda: first_worker.is_cancelled, 10, "the old run to be cancelled")
        await wait_idle(pilot, 120)
        assert not any(n.severity == "error" for n in app._notifications)
        assert screen.comparison.question == QA_QUESTION
        assert all(a.tokens <= 4 for a in screen.comparison.answers)


async def test_export_after_a_real_run(make_app, real_explorer, tmp_path):
    app = make_app(factory_of(real_explorer), settings=settings(4), export_dir=tmp_path / "exports")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        app.main.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot, 120)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: len(list((tmp_path / "exports").glob("*.json"))) == 1, 10, "the export")
        data = json.loads(next((tmp_path / "exports").glob("*.json")).read_text())
        assert data["question"] == RETRIEVAL_QUESTION and data["model"] == real_explorer.loaded.model_id
        assert [a["status"] for a in data["answers"]][:2] == ["done", "done"]
        assert len(data["passages"]) == 3


class SlowReranker(LLMReranker):
    """The real reranker on the embedded model, kept decoding long enough to be caught mid-run:
    it does not stop at the end of its reply (no newline or end-of-turn stop, up to 2,000 tokens),
    and records the tokens it decoded and when its generation returned."""

    def __init__(self, loaded) -> None:
        super().__init__(loaded, max_new_tokens=2000)
        self.decoding = threading.Event()
        self.tokens = 0
        self.returned_at: float | None = None

    def generate(self, prompt: str, cancel: threading.Event | None = None) -> str:
        from engine.generate import generate_rows

        def on_token(row: int, delta: str, result) -> None:
            self.tokens = len(result.token_ids)
            self.decoding.set()

        try:
            rows = generate_rows(self.loaded.model, self.loaded.tokenizer, [prompt], [None], self.max_new_tokens, on_token,
                                 cancel, stop_at_newline=False, ignore_eos=True)
        finally:
            self.returned_at = time.monotonic()
        return "[" + rows[0].text


async def test_escape_stops_a_real_dynamic_rerank_within_a_second(make_app, real_explorer):
    reranker = real_explorer.reranker = SlowReranker(real_explorer.loaded)
    app = make_app(factory_of(real_explorer), settings=settings(8), rerank="dynamic")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        screen = app.main
        state = screen.status.query_one("#status-state")
        screen.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        await wait_until(pilot, lambda: reranker.tokens >= 3, 120, "the reranker to be decoding")
        assert "Reranking" in str(state.render()) and reranker.returned_at is None
        pressed = time.monotonic()
        await pilot.press("escape")
        await wait_until(pilot, lambda: "Cancelled" in str(state.render()), 5, "the cancelled status")
        took = time.monotonic() - pressed
        assert took < 1.0, f"{took:.2f} s from esc to 'Cancelled'"
        assert reranker.returned_at is not None and reranker.returned_at - pressed < 1.0
        assert reranker.tokens < reranker.max_new_tokens  # stopped mid-reply, not at its end
        await wait_idle(pilot)
        assert {a.status for a in screen.comparison.answers} == {"cancelled"}
        block = screen.comparison.extra["rerank"]
        assert block["fallback"] is True and "cancelled" in block["note"]
