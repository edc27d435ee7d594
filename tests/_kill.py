"""Crash-safety helpers: end a `prag` command with SIGKILL at an exact point, then look at what it left.

`run_killed(args, point)` runs `python -m engine.cli.app ARGS` in a child process whose driver
wraps one function (`KillPoint.target`, "module:qualname") so that its n-th call ends the
process with SIGKILL, before or after the call runs. SIGKILL runs no handler, no `finally`
and no atexit: what a power cut or the OOM killer leaves. Unlike a timer, the point is hit
on every run, however busy the machine is.

Useful targets:

- `engine.atomic:_umask`, before: an atomic write has its temp file complete and fsynced,
  but not renamed over the real one yet (`atomic_path` calls it just before `os.replace`).
- a stage's own functions (`engine.offline.encode:train_lora`, `engine.offline.train:save_checkpoint`, ...):
  work done in memory and not saved, or saved and not reported.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_DRIVER = r"""
import functools, importlib, os, signal, sys

module_name, qualname = os.environ["PRAG_TEST_KILL_TARGET"].split(":")
call, when = int(os.environ["PRAG_TEST_KILL_CALL"]), os.environ["PRAG_TEST_KILL_WHEN"]
owner = importlib.import_module(module_name)
*path, name = qualname.split(".")
for part in path:
    owner = getattr(owner, part)
original = getattr(owner, name)
calls = 0

@functools.wraps(original)
def killing(*args, **kwargs):
    global calls
    calls += 1
    if calls == call and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    if calls == call and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(owner, name, killing)
sys.argv = ["prag", *sys.argv[1:]]
from engine.cli.app import main
main()
"""


@dataclass(frozen=True)
class KillPoint:
    """Where the child dies: on the `call`-th call of `target`, `when` ("before" or "after") it runs."""

    name: str
    """Test id, e.g. "temp-written-not-renamed"."""
    target: str
    """"module:qualname" of the function to wrap, e.g. "engine.offline.encode:train_lora"."""
    call: int = 1
    when: str = "after"


def prag(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`prag ARGS` as a user runs it (no kill point)."""
    return subprocess.run([sys.executable, "-m", "engine.cli.app", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=dict(os.environ))


def run_killed(args: tuple[str, ...] | list[str], point: KillPoint, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `prag ARGS` and let it die at `point`; fails the test if the point was never reached."""
    env = {**os.environ, "PRAG_TEST_KILL_TARGET": point.target, "PRAG_TEST_KILL_CALL": str(point.call),
           "PRAG_TEST_KILL_WHEN": point.when}
    proc = subprocess.run([sys.executable, "-c", _DRIVER, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    if proc.returncode != -signal.SIGKILL:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise AssertionError(f"kill point {point.name} ({point.target} call {point.call}) was not reached: "
                             f"exit code {proc.returncode}; {tail}")
    return proc


def temp_files(*folders: Path) -> list[Path]:
    """Temp files an atomic writer leaves when killed (`.<name>.<random>.tmp`), anywhere below `folders`."""
    return sorted(p for folder in folders if Path(folder).exists() for p in Path(folder).rglob(".*.tmp"))


def snapshot(*folders: Path) -> dict[Path, str]:
    """sha256 of every file below `folders`."""
    files = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                files[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def changed_files(before: dict[Path, str], after: dict[Path, str]) -> list[str]:
    """Files of `before` that are gone or differ in `after` (new files are not counted)."""
    return [f"{path} ({'deleted' if path not in after else 'modified'})" for path, digest in before.items() if after.get(path) != digest]
