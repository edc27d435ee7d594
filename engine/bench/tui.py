"""The TUI as a user meets it: first frame and key latency, each in a fresh process.

`prag tui` is spawned on a pseudo-terminal and `tui.bench` run as a subprocess, so the
engine never imports the `tui` package and the figures include process start-up.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from engine.bench.figures import Figure

_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[P^_][^\x1b]*\x1b\\"
                      rb"|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>78]")
"""Terminal control sequences (CSI, OSC, DCS, charset and two-byte escapes): stripped to read the screen's text."""
FIRST_FRAME_MARKERS = (b"prag-explorer", b"Ask a question", b"Vanilla", b"DyPRAG-combine", b"Help")
"""Text of the status line, the question box, the first and last answer cards and the key footer."""


def _time_first_frame(size: tuple[int, int], timeout_s: float) -> float:
    """Seconds from spawning `prag tui` on a new pseudo-terminal until its output holds every marker."""
    import fcntl
    import pty
    import select
    import signal
    import struct
    import termios

    master, slave = pty.openpty()
    columns, rows = size
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli.app", "tui"], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True, close_fds=True)
    os.close(slave)
    output = b""
    try:
        while time.perf_counter() - start < timeout_s:
            ready, _, _ = select.select([master], [], [], 0.25)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            screen = _ESCAPES.sub(b"", output)
            if all(marker in screen for marker in FIRST_FRAME_MARKERS):
                return time.perf_counter() - start
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # the model is still loading in a worker: nothing to save
        proc.wait(timeout=30)
        os.close(master)
    tail = _ESCAPES.sub(b"", output).decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(f"`prag tui` drew no complete first frame within {timeout_s:.0f} s (last output: {tail[0][:120]!r})")


def bench_tui_first_frame(repeats: int = 3, size: tuple[int, int] = (120, 40), timeout_s: float = 60.0) -> list[Figure]:
    """`prag tui` as a user starts it, on a pseudo-terminal (POSIX only; elsewhere nothing is reported)."""
    if os.name != "posix":
        return []
    samples = [_time_first_frame(size, timeout_s) for _ in range(repeats)]
    return [Figure("tui_first_frame_s", statistics.median(samples), "s", 1.5,
                   f"median of {repeats}: `prag tui` spawned on a {size[0]}x{size[1]} pseudo-terminal until the bytes read "
                   f"back hold the whole first screen (status, question box, six cards, key footer); the model then loads in a worker")]


def bench_key_latency(store: Path, samples: int = 60, max_new_tokens: int = 32) -> Figure:
    """`python -m tui.bench` in a fresh process: the real app headless (Pilot), six answers streaming."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    args = [sys.executable, "-m", "tui.bench", "--samples", str(samples), "--max-new-tokens", str(max_new_tokens), "--store", str(store)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "tui.bench failed")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return Figure("tui_key_latency_p95_ms", data["p95_ms"], "ms", 50.0,
                  f"{data['samples']} keys typed while {data['methods']} answers stream ({data['runs']} run(s) of {max_new_tokens} tokens, "
                  f"{data['size'][0]}x{data['size'][1]}): key event to the refresh that shows it; p50 {data['p50_ms']:.1f} ms, "
                  f"max {data['max_ms']:.1f} ms")
