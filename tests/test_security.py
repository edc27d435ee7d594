"""Weights load only through safetensors or torch.load(weights_only=True); default runs stay offline."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_BLOCKER = """
import socket, sys
attempts = []
def _refuse(self, address, *args, **kwargs):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(address)
        raise OSError("network blocked by test")
    return _connect(self, address, *args, **kwargs)
_connect = socket.socket.connect
socket.socket.connect = _refuse
socket.socket.connect_ex = lambda self, address: (_refuse(self, address), 0)[1]
import atexit
atexit.register(lambda: attempts and sys.stderr.write(f"NETWORK ATTEMPTS: {attempts}\\n"))
sys.argv = ["prag"] + sys.argv[1:]
from engine.cli.app import main
main()
"""


def _sources() -> list[Path]:
    return sorted(p for folder in ("engine", "tui") for p in (ROOT / folder).rglob("*.py"))


def test_every_torch_load_is_weights_only():
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load"
                    and getattr(node.func.value, "id", None) == "torch"):
                ok = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords)
                if not ok:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


def test_no_pickle_loading_anywhere():
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
        assert "pickle" not in names and "dill" not in names, path


def _offline(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return subprocess.run([sys.executable, "-c", _BLOCKER, *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def test_prag_ask_with_sockets_blocked():
    result = _offline("ask", "Who wrote Hamlet?", "--methods", "vanilla,rag", "--max-new-tokens", "4", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "NETWORK ATTEMPTS" not in result.stderr
    assert len(json.loads(result.stdout)["answers"]) == 2


def test_prag_eval_with_sockets_blocked(tmp_path):
    result = _offline("eval", "--data", str(ROOT / "sample_corpus" / "questions.jsonl"), "--limit", "2", "--methods", "vanilla,rag",
                      "--max-new-tokens", "4", "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "NETWORK ATTEMPTS" not in result.stderr
    assert json.loads(result.stdout)["n"] == 2
