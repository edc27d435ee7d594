"""Model loading: the embedded default, any local gate/up/down causal LM, clear refusals."""

from __future__ import annotations

import pytest
import torch

from engine.errors import ModelError
from engine.models import DEFAULT_MODEL_ID, load_model


def test_embedded_model_shape(loaded):
    arch = loaded.arch
    assert (arch.model_id, arch.hidden_size, arch.intermediate_size, arch.num_layers) == (DEFAULT_MODEL_ID, 576, 1536, 30)
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token_id is not None
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_local_qwen2_directory_loads(loaded, tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=len(loaded.tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    other = load_model(tmp_path, tmp_path / "cache")
    assert (other.arch.hidden_size, other.arch.intermediate_size, other.arch.num_layers) == (32, 48, 2)
    assert other.arch.model_id == tmp_path.name


def test_architecture_without_gate_up_down_is_refused(loaded, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=len(loaded.tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="gate_proj"):
        load_model(tmp_path, tmp_path / "cache")


def test_missing_and_non_model_paths(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope", tmp_path)
    with pytest.raises(ModelError, match="config.json"):
        load_model(tmp_path, tmp_path)


def test_conversion_removes_a_killed_conversions_temp_folder(tmp_path, monkeypatch) -> None:
    from engine import models

    target = tmp_path / "smollm2-v1"
    stale = tmp_path / ".smollm2-v1.k1ll3d"  # what a SIGKILL mid-save leaves (about 500 MB for real)
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half a model")
    calls = []

    def fake_dequantize(gguf, where, progress) -> None:
        calls.append(where)
        where.mkdir()
        (where / "config.json").write_text("{}")
        (where / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(models, "_dequantize_and_save", fake_dequantize)
    models._convert_gguf(tmp_path / "model.gguf", target, None)
    assert not stale.exists() and calls == [target]
    models._convert_gguf(tmp_path / "model.gguf", target, None)  # finished meanwhile (another process): nothing to do
    assert calls == [target]
