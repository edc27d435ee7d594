"""Shared fixtures.

- Every test gets its own empty PRAG_HOME (no user config, no stray LoRAs), but the
  converted embedded model is cached once per run in a shared folder, so the 15 s
  GGUF conversion happens once, not per test.
- `loaded` is the real embedded SmolLM2 (session-scoped, read-only: never train it in place).
- `tiny` is a 2-layer random Llama built from a config, for fast maths tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning OpenMP threads starve each other
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

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
