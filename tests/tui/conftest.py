"""Fixtures for the explorer's tests.

- `make_app(factory, **options)`: a `PragApp` with no cursor blink and the test's PRAG_HOME.
- `fake`: the deterministic fake engine's factory (tests/tui/fake_engine.py).
- `real_explorer`: the real engine on the embedded model, as `prag tui` builds it, but with
  its LoRA store in the test's tmp folder; `seeded_explorer` adds random PRAG LoRAs for the
  test questions' passages and a random translator, so all six methods generate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from engine.config import load_settings
from tests.tui.fake_engine import fake_factory

RETRIEVAL_QUESTION = "Who founded the engineering firm Quistrel Dynamics?"
"""Not in the sample QA file: BM25 retrieves three passages for it."""
QA_QUESTION = "What colour is the town hall of Velmora painted?"
"""sq-025 in the sample QA file (gold: saffron yellow)."""
CONFLICT_QUESTION = "In which city does the Eiffel Tower stand?"
"""sq-049, a counterfactual question (memory: Paris, passage: Rome)."""


async def wait_until(pilot, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll the app until `predicate()` holds (one pause is never enough with thread workers)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.02)


async def wait_ready(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.engine is not None, 60, "the engine to open")


async def wait_idle(pilot, timeout: float = 60.0) -> None:
    """Until the current run has finished (done, cancelled or failed)."""
    screen = pilot.app.main
    await wait_until(pilot, lambda: not screen.running, timeout, "the run to finish")
    await pilot.pause()


async def ask_and_wait(pilot, question: str) -> None:
    """Once the engine is open: type `question`, run it, wait until every answer is in."""
    await wait_ready(pilot)
    pilot.app.main.question_input.value = question
    await pilot.press("enter")
    await wait_idle(pilot)


@pytest.fixture
def make_app():
    from tui.app import PragApp

    def build(factory, **options) -> PragApp:
        settings = options.pop("settings", None) or load_settings(options.pop("overrides", None))
        return PragApp(settings, engine_factory=factory, cursor_blink=False, **options)

    return build


@pytest.fixture
def fake():
    return fake_factory


@pytest.fixture
def real_explorer(loaded, tmp_path):
    """The engine `prag tui` opens, minus the model load (shared) and with an empty store.

    Uses the app's thread count (all cores but one) for the test, as `prag tui` does.
    """
    import torch

    from engine.corpus import load_corpus
    from engine.explorer import Explorer
    from engine.retrieval import BM25Retriever
    from engine.store import LoraStore
    from tui.session import generation_threads

    before = torch.get_num_threads()
    torch.set_num_threads(generation_threads(load_settings()))
    yield Explorer(loaded, BM25Retriever(load_corpus(None)), LoraStore(tmp_path / "loras", loaded.model_id), None, "no translator")
    torch.set_num_threads(before)


@pytest.fixture
def seeded_explorer(real_explorer):
    from tui.bench import seed_demo_adapters

    seed_demo_adapters(real_explorer, [RETRIEVAL_QUESTION, QA_QUESTION])
    return real_explorer


def factory_of(engine) -> Callable:
    """An EngineFactory returning an engine built beforehand."""
    return lambda settings, progress: engine
