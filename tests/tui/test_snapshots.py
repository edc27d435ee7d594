"""SVG snapshots of the explorer with the deterministic fake engine.

Regenerate after an intended change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the SVGs (tests/tui/__snapshots__/) before committing them.
"""

from __future__ import annotations

from dataclasses import replace

from tests.tui.conftest import CONFLICT_QUESTION, QA_QUESTION, wait_idle, wait_ready, wait_until
from tests.tui.fake_engine import fake_factory
from tests.tui.test_app_rerank import RERANK_QUESTION


def build_app(**options):
    from engine.config import load_settings
    from tui.app import PragApp

    return PragApp(load_settings(), engine_factory=fake_factory(), cursor_blink=False, **options)


def run_question(question: str, item_passages: bool = True, view: str | None = None):
    async def run_before(pilot) -> None:
        app = pilot.app
        await wait_ready(pilot)
        await wait_until(pilot, lambda: bool(app.qa_items), 10, "the QA file")
        app.main.options = replace(app.main.options, use_item_passages=item_passages)
        app.main.question_input.value = question
        await pilot.press("enter")
        await wait_idle(pilot)
        if view is not None:
            app.main.show_view(view)
        app.main.question_input.focus()
        await pilot.pause()

    return run_before


def test_main_screen_120x40(snap_compare):
    # BM25 retrieval (scores, highlighted terms), gold answers, EM/F1, sparklines
    assert snap_compare(build_app(), terminal_size=(120, 40), run_before=run_question(QA_QUESTION, item_passages=False))


def test_main_screen_80x24(snap_compare):
    assert snap_compare(build_app(), terminal_size=(80, 24), run_before=run_question(QA_QUESTION))


def test_conflict_view_120x40(snap_compare):
    assert snap_compare(build_app(), terminal_size=(120, 40), run_before=run_question(CONFLICT_QUESTION, view="tab-conflict"))


def test_norms_view_120x40(snap_compare):
    assert snap_compare(build_app(), terminal_size=(120, 40), run_before=run_question(QA_QUESTION, view="tab-norms"))


def test_conflict_view_80x24(snap_compare):
    assert snap_compare(build_app(), terminal_size=(80, 24), run_before=run_question(CONFLICT_QUESTION, view="tab-conflict"))


def test_rerank_passages_120x40(snap_compare, monkeypatch):
    # dynamic rerank: kept passages with new and BM25 rank, the dropped candidates greyed below; footer "^g Rerank on"
    ticks = iter([10.0, 11.25])
    monkeypatch.setattr("tests.tui.fake_engine.clock", lambda: next(ticks))  # "+ rerank 1.25 s" in the status
    assert snap_compare(build_app(rerank="dynamic"), terminal_size=(120, 40), run_before=run_question(RERANK_QUESTION))
