"""Dynamic reranking in the explorer, with the fake engine (its reranker keeps the BM25
top-3 in reverse order and drops the rest): the ctrl+g / palette / CLI switch, the
"reranking" status, the panel's reranked and dropped rows, the fallback note, re-runs
that keep the user's switches, and the rerank block in the exports."""

from __future__ import annotations

import json
import threading

from typer.testing import CliRunner

from engine.rerank import RerankResult, apply_order, bm25_fallback
from tests.tui.conftest import RETRIEVAL_QUESTION, wait_idle, wait_ready, wait_until
from tests.tui.fake_engine import FakeExplorer
from tui.export import to_markdown
from tui.messages import PassagesRetrieved
from tui.reranking import rerank_block, rerank_rows
from tui.widgets.passages import PassageItem, RerankNote

RERANK_QUESTION = "Who was the lighthouse keeper at the Pellow Light during the winter gales?"
"""sq-073, the sample rerank case: 10 BM25 candidates; its supporting passage (Pellow Light) is BM25 #4."""


def footer_label(screen) -> str:
    """The description the footer shows for ctrl+g."""
    return screen.active_bindings["ctrl+g"].binding.description


def row_text(item: PassageItem) -> str:
    return str(item.render())


async def test_ctrl_g_reranks_the_next_run_and_the_panel_shows_new_and_bm25_ranks(make_app):
    gate = threading.Event()
    engine = FakeExplorer(rerank_gate=gate)
    app = make_app(lambda settings, progress: engine)
    messages: list = []
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        await wait_ready(pilot)
        screen = app.main
        assert screen.options.rerank == "none" and footer_label(screen) == "Rerank off"
        assert screen.question_input.has_focus
        await pilot.press("ctrl+g")  # works from the question box
        assert screen.options.rerank == "dynamic" and footer_label(screen) == "Rerank on"
        assert any(n.title == "Dynamic rerank" and n.message.startswith("On:") for n in app._notifications)

        screen.question_input.value = RERANK_QUESTION
        await pilot.press("enter")
        state = screen.status.query_one("#status-state")
        await wait_until(pilot, lambda: "Reranking 10 candidates" in str(state.render()), 10, "the reranking status")
        assert screen.running and not engine.calls  # compare waits for the reranker
        gate.set()
        await wait_idle(pilot)

        assert engine.reranks[-1] == {"question": RERANK_QUESTION, "top_k": 3, "candidates": 10}
        assert engine.asks[-1].rerank == "dynamic" and engine.asks[-1].hits is None
        # the QA record (sq-073) still gives the gold answers, but its own passage is not used: the corpus is reranked
        assert screen.item is not None and screen.item.id == "sq-073"
        kept = ["fict-027", "fict-026", "fict-028"]  # BM25 #3, #2, #1
        assert [h.passage.id for h in engine.calls[-1]["hits"]] == kept
        items = screen.passages.items
        assert len(items) == 10
        assert ([(i.hit.rank, i.bm25_rank, i.dropped, i.included) for i in items[:3]]
                == [(1, 3, False, True), (2, 2, False, True), (3, 1, False, True)])
        assert row_text(items[0]).startswith("●  1 (bm25 #3)")
        dropped = items[3:]
        assert [i.bm25_rank for i in dropped] == list(range(4, 11))
        assert all(i.dropped and not i.included and i.has_class("-excluded", "-dropped") for i in dropped)
        assert dropped[0].hit.passage.title == "Pellow Light"
        assert row_text(dropped[0]).startswith("○  ✗ (bm25 #4)") and "dropped · Pellow Light" in row_text(dropped[0])
        assert "Dropped by the reranker (BM25 #4)" in str(dropped[0].tooltip)
        assert screen.passages_panel.border_title == "Passages · reranked 10 candidates, kept 3"
        assert not screen.passages.query(RerankNote)
        assert screen.comparison.extra["rerank"]["kept"] == kept and not screen.comparison.extra["rerank"]["fallback"]
        assert "Done in 0.42 s (+ rerank" in str(state.render())
        assert screen.comparison.extra["rerank"]["seconds"] >= 0
        retrieved = {id(m): m for m in messages if isinstance(m, PassagesRetrieved)}  # the hook sees it again as it bubbles
        assert [type(m.rerank) for m in retrieved.values()] == [RerankResult]

        # switched off again: the same question goes back to the QA record's own passage (no reranker call)
        await pilot.press("ctrl+g")
        assert screen.options.rerank == "none" and footer_label(screen) == "Rerank off"
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert len(engine.reranks) == 1
        items = screen.passages.items
        assert [(i.hit.passage.title, i.bm25_rank, i.dropped) for i in items] == [("Pellow Light", None, False)]
        assert screen.passages_panel.border_title == "Passages · from sq-073"
        assert "rerank" not in screen.comparison.extra
        # ... and a question outside the QA file to plain BM25 top-3
        screen.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert [i.bm25_rank for i in screen.passages.items] == [None, None, None] and len(engine.reranks) == 1


async def test_rerun_keeps_the_rerank_and_a_dropped_passage_switched_back_on(make_app):
    engine = FakeExplorer()
    app = make_app(lambda settings, progress: engine, rerank="dynamic")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        screen = app.main
        assert footer_label(screen) == "Rerank on"
        screen.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot)
        items = screen.passages.items
        assert [i.dropped for i in items] == [False] * 3 + [True] * 3
        items[3].focus()
        await pilot.press("space")  # a dropped candidate, used anyway next time
        items[0].focus()
        await pilot.press("space")  # and a kept one left out
        assert screen.passages_panel.border_subtitle == "1 off, 1 dropped back on for the next run"
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert len(engine.reranks) == 1  # not reranked again
        assert engine.asks[-1].hits is not None  # the passages on screen, given to the engine
        used = [h.passage.id for h in engine.calls[-1]["hits"]]
        assert used == [items[1].hit.passage.id, items[2].hit.passage.id, items[3].hit.passage.id]
        block = screen.comparison.extra["rerank"]
        assert block["reused"] is True and block["seconds"] is None and len(block["positions"]) == 6


async def test_unusable_reply_shows_the_fallback_note_with_the_raw_reply(make_app):
    engine = FakeExplorer(rerank_reply="I like lighthouses")
    app = make_app(lambda settings, progress: engine, rerank="dynamic", candidates=6)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        screen = app.main
        screen.question_input.value = RERANK_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot)
        assert engine.reranks[-1]["candidates"] == 6
        note = screen.passages.query_one(RerankNote)
        assert "fell back to BM25 order" in str(note.render()) and "I like lighthouses" not in str(note.render())
        assert note.tooltip == "Reranker replied: 'I like lighthouses'"
        note.focus()
        await pilot.press("enter")
        assert note.expanded and "Reranker replied: 'I like lighthouses'" in str(note.render())
        items = screen.passages.items
        assert [(i.hit.rank, i.bm25_rank) for i in items[:3]] == [(1, 1), (2, 2), (3, 3)]
        assert [i.dropped for i in items] == [False] * 3 + [True] * 3
        assert screen.passages_panel.border_title == "Passages · BM25 top-3 of 6 (reranker fell back)"
        assert screen.comparison.extra["rerank"]["fallback"] is True


async def test_palette_toggles_rerank_and_export_has_the_rerank_block(make_app, tmp_path):
    engine = FakeExplorer()
    app = make_app(lambda settings, progress: engine, export_dir=tmp_path / "out")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        command = next(c for c in app.get_system_commands(app.main) if c.title.startswith("Dynamic rerank"))
        assert command.title == "Dynamic rerank (off)" and "top 10 BM25 candidates" in command.help
        command.callback()
        assert app.main.options.rerank == "dynamic"
        assert any(c.title == "Dynamic rerank (on)" for c in app.get_system_commands(app.main))
        app.main.question_input.value = RERANK_QUESTION
        await pilot.press("enter")
        await wait_idle(pilot)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: len(list((tmp_path / "out").glob("*"))) == 2, 10, "the export files")
        data = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
        block = data["rerank"]
        assert block["kept"] == ["fict-027", "fict-026", "fict-028"] and len(block["dropped"]) == 7
        assert block["raw"] == "[3] > [2] > [1]" and block["mode"] == "dynamic" and block["candidates"] == 10
        assert block["positions"][0] == {"id": "fict-027", "title": "Kestrow maritime museum", "rank": 1, "bm25_rank": 3,
                                         "score": block["positions"][0]["score"], "kept": True}
        assert data["excluded_passages"] == []  # dropped candidates are not the user's switches
        text = next((tmp_path / "out").glob("*.md")).read_text()
        assert "## Rerank (dynamic)" in text and "- **Reranker reply:** `[3] > [2] > [1]`" in text
        assert "| 1 | 3 | Kestrow maritime museum | kept |" in text and "| - | 4 | Pellow Light | dropped |" in text


async def test_escape_while_reranking_cancels_the_run(make_app):
    gate = threading.Event()  # never opened: only the cancel event ends the fake rerank
    engine = FakeExplorer(rerank_gate=gate)
    app = make_app(lambda settings, progress: engine, rerank="dynamic")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        screen = app.main
        screen.question_input.value = RETRIEVAL_QUESTION
        await pilot.press("enter")
        state = screen.status.query_one("#status-state")
        await wait_until(pilot, lambda: "Reranking 10 candidates" in str(state.render()), 10, "the reranking status")
        await pilot.press("escape")
        await wait_idle(pilot, 2)  # the reranker stops at the cancel, as the real one does between tokens
        assert "Cancelled after" in str(state.render())
        assert {a.status for a in screen.comparison.answers} == {"cancelled"}
        assert not any(a.text for a in screen.comparison.answers)  # nothing was generated
        # it kept BM25 order and says why; every candidate is still listed
        assert screen.comparison.extra["rerank"]["fallback"] is True
        assert "reranking cancelled" in str(screen.passages.query_one(RerankNote).render())
        assert len(screen.passages.items) == 6


def test_rerank_rows_and_block_from_engine_results():
    engine = FakeExplorer()
    pool = engine.retrieve(RERANK_QUESTION, 6)
    kept, dropped = apply_order(pool, [4, 1])
    result = RerankResult(kept, dropped, "[4] > [1]", False, "reranker kept 2 of 6", [4, 1])
    rows = rerank_rows(result)
    assert ([(r.rank, r.bm25_rank, r.kept) for r in rows]
            == [(1, 4, True), (2, 1, True), (None, 2, False), (None, 3, False), (None, 5, False), (None, 6, False)])
    block = rerank_block(result, 6, 1.23456)
    assert block["kept"] == [pool[3].passage.id, pool[0].passage.id] and block["reused"] is False and block["seconds"] == 1.235
    fallback = bm25_fallback(pool, 3, "", "reranker answer had no usable identifiers; kept BM25 order")
    assert ([(r.rank, r.bm25_rank, r.kept) for r in rerank_rows(fallback)][:4]
            == [(1, 1, True), (2, 2, True), (3, 3, True), (None, 4, False)])
    from engine.explorer import Comparison

    text = to_markdown(Comparison(RERANK_QUESTION, "m", fallback.kept, [], extra={"rerank": rerank_block(fallback, 6)}), None, [], "now")
    assert "- **Outcome:** **fell back to BM25 order**: reranker answer had no usable identifiers" in text
    assert "- **Reranker reply:** (empty)" in text


def test_cli_refuses_a_bad_rerank_mode_or_candidate_count(tmp_path, monkeypatch):
    from engine.cli.app import app

    monkeypatch.setenv("PRAG_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["tui", "--rerank", "magic"])
    assert result.exit_code == 2 and "unknown rerank mode 'magic'" in result.output
    result = CliRunner().invoke(app, ["tui", "--rerank", "dynamic", "--candidates", "0"])
    assert result.exit_code == 2 and "--candidates must be at least 1" in result.output
    help_text = CliRunner().invoke(app, ["tui", "--help"]).output
    assert "--rerank" in help_text and "--candidates" in help_text
