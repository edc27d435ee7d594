"""Benchmarks: every performance target measured in one run and printed as a figure with its target.

Ratios are taken within one run on one machine (batched vs sequential, DyPRAG vs
vanilla) so they hold across machines; absolute figures (ms, s, MB) are what this
machine measured. Nothing here is a test: targets are reported, never asserted.
One module per kind of figure (figures, generation, offline, tui, scale); `run` puts them together.
"""

from engine.bench.figures import Figure, current_rss_mb, figures_json, machine_load, model_figure
from engine.bench.generation import bench_soak
from engine.bench.offline import gold_records
from engine.bench.run import run_benchmarks, run_scale_benchmarks
from engine.bench.scale import bench_bm25s_scale
from engine.bench.tui import _ESCAPES, bench_tui_first_frame

__all__ = ["Figure", "_ESCAPES", "bench_bm25s_scale", "bench_soak", "bench_tui_first_frame", "current_rss_mb", "figures_json",
           "gold_records", "machine_load", "model_figure", "run_benchmarks", "run_scale_benchmarks"]
