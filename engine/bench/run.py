"""The two runs `prag bench` offers: the default one (every target) and `--scale`."""

from __future__ import annotations

from pathlib import Path

from engine.bench.figures import Figure
from engine.bench.generation import bench_generation, bench_model_load, bench_other_dtype, bench_peak_rss
from engine.bench.offline import bench_offline_stages, bench_storage
from engine.bench.scale import bench_bm25, bench_bm25s_scale, bench_ray_encode
from engine.bench.tui import bench_key_latency, bench_tui_first_frame
from engine.progress import ProgressCallback, report


def run_benchmarks(explorer, models_dir: Path, quick: bool = False, progress: ProgressCallback | None = None,
                   corpus_size: int | None = None, workdir: Path | None = None) -> list[Figure]:
    """Every target of the default run. `workdir` (a temp folder) receives the random LoRAs, the
    benchmark's encoded LoRAs and translator: they must never land in the user's store."""
    import tempfile

    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="prag-bench-") as tmp:
            return run_benchmarks(explorer, models_dir, quick, progress, corpus_size, Path(tmp))
    new_tokens, repeats = (16, 3) if quick else (32, 5)
    figures = bench_generation(explorer, new_tokens, repeats, progress)
    figures.append(bench_other_dtype(explorer, new_tokens, 2 if quick else 3))
    stage = "Benchmark: retrieval, storage, load, memory, TUI, offline stages"
    report(progress, stage, 0, 6)
    figures.append(bench_bm25(queries=20 if quick else 50))
    figures += bench_storage(explorer, corpus_size or len(explorer.retriever))
    report(progress, stage, 1, 6)
    figures.append(bench_model_load(models_dir))
    report(progress, stage, 2, 6)
    figures.append(bench_peak_rss(models_dir, new_tokens, explorer.store.root))
    report(progress, stage, 3, 6)
    figures += bench_tui_first_frame(repeats=3)
    report(progress, stage, 4, 6)
    figures.append(bench_key_latency(workdir / "tui-loras", samples=30 if quick else 60))
    report(progress, stage, 5, 6)
    figures += bench_offline_stages(explorer.loaded, workdir / "offline", quick, progress)
    report(progress, stage, 6, 6)
    return figures


def run_scale_benchmarks(workdir: Path, passages: int = 1_000_000, encode_passages: int = 6, models_dir: Path | None = None,
                         ray: bool = True, progress: ProgressCallback | None = None) -> list[Figure]:
    figures = bench_bm25s_scale(workdir, passages, progress=progress)
    if ray:
        figures += bench_ray_encode(workdir, encode_passages, models_dir=models_dir, progress=progress)
    return figures
