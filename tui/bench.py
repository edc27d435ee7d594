"""Key latency while answers stream: does typing stay fluid during generation?

`measure_key_latency` drives the real app headless (Textual's Pilot) with the real
engine: it runs a question, and while the answers stream it types one character at
a time into the question box, timing each from the key event to the first screen
refresh that shows it. The target is a p95 of at most 50 ms with six answers streaming.

By default the engine is the embedded model with random PRAG LoRAs and a random
DyPRAG translator (`seed_demo_adapters`), so all six methods generate even on a
fresh machine; the answers are meaningless, the load is the real one.

    python -m tui.bench --samples 60
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import Settings, load_settings
from tui.session import EngineFactory, open_explorer

if TYPE_CHECKING:
    from engine.explorer import Explorer

BENCH_QUESTION = "Who founded the engineering firm Quistrel Dynamics, and in which port city?"
"""Not in the sample QA file, so BM25 retrieves three passages."""


@dataclass(frozen=True)
class LatencyReport:
    p50_ms: float
    p95_ms: float
    max_ms: float
    samples: int
    """Key presses measured (each while at least one answer was generating)."""
    runs: int
    """Questions run to collect them."""
    methods: int
    """Methods generating in each run."""
    size: tuple[int, int]

    def as_dict(self) -> dict:
        return asdict(self)


def seed_demo_adapters(explorer: Explorer, questions: Sequence[str], top_k: int = 3, seed: int = 0) -> None:
    """Random PRAG LoRAs for the passages these questions retrieve, and a random translator
    if none is loaded: every method then generates (benchmarks and tests; meaningless answers)."""
    from engine.adapters import random_adapter
    from engine.translator import ParameterTranslator, TranslatorConfig

    arch = explorer.loaded.arch
    for question in questions:
        for hit in explorer.retrieve(question, top_k):
            if not explorer.store.has(hit.passage):
                explorer.store.put(hit.passage, random_adapter(arch, rank=2, scale=explorer.store.config.scale, std=0.01, seed=seed))
    if explorer.translator is None:
        explorer.translator = ParameterTranslator(TranslatorConfig(arch)).eval()


def bench_factory(questions: Sequence[str] = (BENCH_QUESTION,)) -> EngineFactory:
    """The real engine, seeded so that all six methods generate."""

    def factory(settings: Settings, progress) -> Explorer:
        explorer = open_explorer(settings, progress)
        seed_demo_adapters(explorer, questions, settings.top_k)
        return explorer

    return factory


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def _collect(app, size: tuple[int, int], question: str, samples: int, interval_s: float,
                   timeout_s: float) -> tuple[list[float], int, int]:
    from textual import events

    latencies: list[float] = []
    runs = 0
    methods = 0
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout_s
    async with app.run_test(size=size) as pilot:
        while app.engine is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the engine did not open in time")
            await pilot.pause(0.05)
        screen = app.main
        box = screen.question_input
        letters = "abcdefghijklmnopqrstuvwxyz"
        while len(latencies) < samples and time.monotonic() < deadline:
            box.value = question
            screen.ask(question)
            runs += 1
            methods = len(screen.run_methods)
            while screen.running and len(latencies) < samples:
                generating = any(a is not None and a.status == "generating" for a in screen.answers)
                if generating:
                    char = letters[len(latencies) % len(letters)]
                    before = box.value
                    start = time.perf_counter()
                    app.post_message(events.Key(char, char))
                    while box.value == before:
                        if time.perf_counter() - start > 10:
                            raise TimeoutError("a key press was not handled within 10 s")
                        await asyncio.sleep(0.0005)
                    painted = loop.create_future()
                    app.call_after_refresh(lambda painted=painted: painted.done() or painted.set_result(None))
                    await painted
                    latencies.append((time.perf_counter() - start) * 1000)
                await asyncio.sleep(interval_s)
            while screen.running:
                await pilot.pause(0.05)
    return latencies, runs, methods


def measure_key_latency(
    engine_factory: EngineFactory | None = None,
    settings: Settings | None = None,
    question: str = BENCH_QUESTION,
    samples: int = 60,
    size: tuple[int, int] = (120, 40),
    interval_s: float = 0.08,
    max_new_tokens: int = 32,
    timeout_s: float = 600.0,
) -> LatencyReport:
    """Type while answers stream; milliseconds from key event to the refresh that shows it.

    Args:
        engine_factory: builds the engine (default: the real one, seeded so six methods generate).
        settings: engine settings (default: `load_settings()`), with `max_new_tokens` applied.
        question: what to run, again and again until enough keys were measured.
        samples: key presses to measure.
        size: terminal (columns, rows).
        interval_s: pause between key presses (a fast typist: 80 ms).
        max_new_tokens: tokens per answer (longer runs give more samples per run).
        timeout_s: give up after this long.
    """
    from tui.app import PragApp

    settings = replace(settings or load_settings(), max_new_tokens=max_new_tokens)
    app = PragApp(settings, engine_factory=engine_factory or bench_factory((question,)), cursor_blink=False, remember_history=False)
    latencies, runs, methods = asyncio.run(_collect(app, size, question, samples, interval_s, timeout_s))
    if not latencies:
        raise RuntimeError("no key press happened while answers were streaming")
    return LatencyReport(
        p50_ms=round(statistics.median(latencies), 2),
        p95_ms=round(_percentile(latencies, 0.95), 2),
        max_ms=round(max(latencies), 2),
        samples=len(latencies),
        runs=runs,
        methods=methods,
        size=size,
    )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Key latency of `prag tui` while six answers stream.")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--size", default="120x40", help="COLUMNSxROWS")
    parser.add_argument("--store", type=Path, default=None, help="PRAG LoRA store (default: a temporary folder)")
    args = parser.parse_args()
    import tempfile

    columns, rows = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"store": args.store or Path(tmp) / "loras"})
        report = measure_key_latency(settings=settings, samples=args.samples, size=(columns, rows), max_new_tokens=args.max_new_tokens)
    print(json.dumps(report.as_dict()))


if __name__ == "__main__":
    main()
