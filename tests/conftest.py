"""Shared fixtures.

- Every test gets its own empty PRAG_HOME (no user config, no stray LoRAs), but the
  converted embedded model is cached once per run in a shared folder, so the 15 s
  GGUF conversion happens once, not per test.
- `loaded` is the real embedded SmolLM2 (session-scoped, read-only: never train it in place).
- `tiny` is a 2-layer random Llama built from a config, for fast maths tests.
- `run_cli(*args)` runs `prag ARGS` in a child process as a user would (real exit codes and
  output); `assert_one_line_error` checks the CLI's error contract (exit 2, one line, no traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning OpenMP threads starve each other
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_MODEL_CACHE = Path(os.environ.get("PRAG_TEST_MODEL_CACHE", Path.home() / ".cache" / "prag-explorer-test" / "models"))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("prag-home")
    monkeypatch.setenv("PRAG_HOME", str(home))
    monkeypatch.setenv("PRAG_MODEL_CACHE", str(SHARED_MODEL_CACHE))
    for name in ("PRAG_MODEL", "PRAG_CORPUS", "PRAG_TRANSLATOR", "PRAG_STORE", "PRAG_TOP_K", "PRAG_MAX_NEW_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def loaded():
    """The real embedded model, loaded once per test session."""
    from transformers.utils import logging as hf_logging

    from engine.models import load_model

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return load_model(None, SHARED_MODEL_CACHE)


def make_tiny_llama(seed: int = 0, layers: int = 2, hidden: int = 32, intermediate: int = 64):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=128, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=2, bos_token_id=1,
    )
    model = LlamaForCausalLM(config).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


@pytest.fixture
def tiny():
    return make_tiny_llama()


def run_cli(*args: object, timeout: float = 300, env: dict[str, str] | None = None, cwd: Path | str = REPO) -> subprocess.CompletedProcess:
    """`prag ARGS` in a child process (`python -m engine.cli.app`), output captured as text.

    `env` is laid over this process's environment (which holds the test's own PRAG_HOME);
    `args` may hold paths and numbers.
    """
    return subprocess.run([sys.executable, "-m", "engine.cli.app", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    """Exit 2, exactly one non-empty line on stderr that says `needle`, no traceback anywhere."""
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert needle in lines[0], f"{lines[0]!r} does not say {needle!r}"
