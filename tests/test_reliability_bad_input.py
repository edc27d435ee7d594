"""Bad input, as a user meets it: one line on stderr naming the problem and the fix, exit code 2,
no traceback, and every file that existed before the command byte-identical after it.

Kinds already checked for their message elsewhere (tests/test_cli_ask.py, test_evaluate.py,
test_offline_*.py) are run again here only for the untouched-files rule (`RECHECKED`); the
other kinds are new (`NEW`). A workspace holds every input once: corpora, QA files, translators,
a LoRA store with a corrupt file, model folders, augmentation files and a checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.adapters import random_adapter, save_adapter
from engine.corpus import load_corpus, make_passage
from engine.errors import PragError
from engine.models import DEFAULT_MODEL_ID, ModelArch
from engine.offline.recipes import DEFAULT_RECIPE, recipe_config
from engine.offline.records import AugmentFile, save_augment
from engine.offline.train import checkpoint_path
from engine.retrieval import BM25Retriever
from engine.store import LoraStore
from engine.translator import ParameterTranslator, TranslatorConfig, export_reference, save_translator
from tests._kill import REPO, changed_files, snapshot, temp_files
from tests.conftest import SHARED_MODEL_CACHE, run_cli
from tests.test_offline_encode import short_records

SMOLLM = ModelArch(DEFAULT_MODEL_ID, hidden_size=576, intermediate_size=1536, num_layers=30)
"""The embedded model's shapes, so translators and LoRAs for it are made without loading it."""
TINY = ModelArch("tiny-llama", hidden_size=32, intermediate_size=64, num_layers=2)
QUESTION = "Who founded the harbour town of Velmora?"
ROW = {"id": "a", "question": "Who founded Velmora?", "answers": ["salt traders"],
       "passages": [{"title": "Velmora", "text": "Salt traders founded Velmora."}]}


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _translator(arch: ModelArch, path: Path) -> Path:
    with_seed = ParameterTranslator(TranslatorConfig(arch))
    save_translator(with_seed, path, {"training": {"note": "untrained, for tests"}})
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory, loaded) -> Path:
    """Every input of every case, written once."""
    ws = tmp_path_factory.mktemp("bad-input")
    # corpora
    _write(ws / "corpus" / "empty.jsonl", b"")
    (ws / "corpus" / "empty-folder").mkdir()
    _write(ws / "corpus" / "empty-folder" / "README.md", "no .txt files here")
    _write(ws / "corpus" / "binary.jsonl", b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)))
    _write(ws / "corpus" / "latin1.jsonl", '{"title": "Café", "text": "Un café à Velmora."}\n'.encode("latin-1"))
    _write(ws / "corpus" / "no-text.jsonl", '{"text": "Velmora is a hill town."}\n{"title": "only a title"}\n')
    _write(ws / "corpus" / "invalid.jsonl", '{"text": "fine"}\n{not json\n')
    # QA files
    _write(ws / "qa" / "passage-without-text.jsonl", json.dumps({**ROW, "passages": [{"title": "Velmora"}]}) + "\n")
    _write(ws / "qa" / "not-an-object.jsonl", "[1, 2, 3]\n")
    _write(ws / "qa" / "invalid.jsonl", json.dumps(ROW) + "\n{\"id\": \"b\", \"question\n")
    latin1 = json.dumps({**ROW, "question": "Qui a fondé Velmora ?"}, ensure_ascii=False).encode("latin-1")
    _write(ws / "qa" / "latin1.jsonl", latin1 + b"\n")
    _write(ws / "qa" / "long-question.jsonl", json.dumps({**ROW, "question": "why " * 2500}) + "\n")
    _write(ws / "qa" / "answers-not-a-list.jsonl", json.dumps({**ROW, "answers": "salt traders"}) + "\n")
    _write(ws / "qa" / "no-answers.jsonl", json.dumps({k: v for k, v in ROW.items() if k != "answers"}) + "\n")
    _write(ws / "qa" / "twice.jsonl", (json.dumps(ROW) + "\n") * 2)
    _write(ws / "qa" / "ok.jsonl", json.dumps(ROW) + "\n")
    # translators: whole ones for the wrong model, and broken ones for the right model
    tr = ws / "translator"
    whole = _translator(SMOLLM, tr / "whole.safetensors").read_bytes()
    sidecar = (tr / "whole.json").read_bytes()
    _write(tr / "truncated.safetensors", whole[: len(whole) // 2])
    _write(tr / "truncated.json", sidecar)
    _write(tr / "garbage.safetensors", os.urandom(4096))
    _write(tr / "garbage.json", sidecar)
    _write(tr / "bad-sidecar.safetensors", whole)
    _write(tr / "bad-sidecar.json", b'{"model_id": "SmolLM2-135M-Instruct", "hidden_size": 57')
    _write(tr / "no-sidecar.safetensors", whole)
    _translator(TINY, tr / "other-model.safetensors")
    export_reference(ParameterTranslator(TranslatorConfig(SMOLLM)), tr / "reference.pt")
    reference = (tr / "reference.pt").read_bytes()
    _write(tr / "truncated.pt", reference[: len(reference) // 3])
    _write(tr / "garbage.pt", os.urandom(2048))
    # a LoRA store (of the default recipe, which `prag ask` reads) where the first passage retrieved for QUESTION has a garbage file
    store = LoraStore(ws / "store", DEFAULT_MODEL_ID, recipe_config(DEFAULT_RECIPE))
    hits = BM25Retriever(load_corpus(None)).search(QUESTION, 3)
    assert len(hits) == 3
    _write(store.path_for(hits[0].passage), b"\x00garbage, not safetensors" * 40)
    for seed, hit in enumerate(hits[1:], start=1):
        store.put(hit.passage, random_adapter(SMOLLM, 2, 16.0, 0.001, seed=seed))
    save_adapter(random_adapter(SMOLLM, 2, 16.0, 0.001, seed=9), store.dir / f"{make_passage('unrelated').key}.safetensors")
    # model folders
    _write(ws / "model" / "a-file.txt", "not a model directory")
    _write(ws / "model" / "bad-config" / "config.json", '{"architectures": ["LlamaForCausalLM"], "hidden_size": ')
    _write(ws / "model" / "bad-config" / "model.safetensors", b"")
    _write(ws / "model" / "no-weights" / "config.json", json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    _write(ws / "model" / "encoder" / "config.json", json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    _write(ws / "model" / "encoder" / "model.safetensors", b"")
    _gpt2(ws / "model" / "gpt2", loaded.tokenizer)
    # offline stages: a small augmentation file, a garbage one, and a training run with a corrupt checkpoint
    records = short_records(1)
    save_augment(ws / "aug" / "aug.json", AugmentFile("handmade", records))
    _write(ws / "aug" / "garbage.json", "{\"this is\": not json")
    train_store = LoraStore(ws / "train-store", DEFAULT_MODEL_ID)
    for record in records:
        train_store.put(record.passage, random_adapter(SMOLLM, 2, 16.0, 0.001))
    _write(checkpoint_path(ws / "train" / "translator.safetensors"), os.urandom(3000))
    # a PRAG_HOME whose config file is not TOML
    _write(ws / "bad-home" / "config.toml", "top_k = [3,\n")
    return ws


def _gpt2(folder: Path, tokenizer) -> None:
    """A tiny causal LM without gate/up/down MLPs (GPT-2 layout), with a working tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


# (id, args with {ws} for the workspace, what the one line must say, extra environment)
NEW = [
    ("corpus-empty-file", ["ask", "q", "--corpus", "{ws}/corpus/empty.jsonl"], "has no passages", {}),
    ("corpus-folder-without-txt", ["ask", "q", "--corpus", "{ws}/corpus/empty-folder"], "has no passages", {}),
    ("corpus-binary", ["ask", "q", "--corpus", "{ws}/corpus/binary.jsonl"], "looks binary", {}),
    ("corpus-not-utf8", ["ask", "q", "--corpus", "{ws}/corpus/latin1.jsonl"], "is not UTF-8", {}),
    ("corpus-line-without-text", ["ask", "q", "--corpus", "{ws}/corpus/no-text.jsonl"], "no-text.jsonl:2 has no non-empty", {}),
    ("max-new-tokens-0", ["ask", "q", "--max-new-tokens", "0"], "max-new-tokens must be at least 1", {}),
    ("rerank-mode-unknown", ["ask", "q", "--rerank", "sideways"], "sideways", {}),
    ("reranker-model-without-dynamic", ["ask", "q", "--reranker-model", "{ws}/model/gpt2"], "--reranker-model needs --rerank dynamic", {}),
    ("top-k-not-a-number-in-env", ["ask", "q"], "setting top_k must be an integer", {"PRAG_TOP_K": "three"}),
    ("config-file-not-toml", ["ask", "q"], "is not valid TOML", {"PRAG_HOME": "{ws}/bad-home"}),
    ("qa-passage-without-text", ["eval", "--data", "{ws}/qa/passage-without-text.jsonl"], 'passage 0 has no "text"', {}),
    ("qa-line-not-an-object", ["eval", "--data", "{ws}/qa/not-an-object.jsonl"], "expected a JSON object", {}),
    ("qa-invalid-json-line", ["eval", "--data", "{ws}/qa/invalid.jsonl"], "invalid.jsonl:2 is not valid JSON", {}),
    ("qa-not-utf8", ["eval", "--data", "{ws}/qa/latin1.jsonl"], "is not UTF-8", {}),
    ("qa-answers-not-a-list", ["eval", "--data", "{ws}/qa/answers-not-a-list.jsonl"], '"answers" must be a non-empty list', {}),
    ("qa-question-10000-chars", ["eval", "--data", "{ws}/qa/long-question.jsonl"], "the limit is", {}),
    ("eval-top-k-0", ["eval", "--data", "{ws}/qa/ok.jsonl", "--top-k", "0"], "top-k must be at least 1", {}),
    ("translator-missing", ["ask", "q", "--translator", "{ws}/translator/none.safetensors"], "does not exist", {}),
    ("translator-truncated", ["ask", QUESTION, "-m", "dyprag", "--translator", "{ws}/translator/truncated.safetensors"], "is corrupt", {}),
    ("translator-garbage", ["ask", QUESTION, "-m", "dyprag", "--translator", "{ws}/translator/garbage.safetensors"], "is corrupt", {}),
    ("translator-sidecar-corrupt", ["ask", QUESTION, "-m", "dyprag", "--translator", "{ws}/translator/bad-sidecar.safetensors"],
     "sidecar", {}),
    ("translator-sidecar-missing", ["ask", QUESTION, "-m", "dyprag", "--translator", "{ws}/translator/no-sidecar.safetensors"],
     "sidecar", {}),
    ("translator-other-model-safetensors", ["ask", QUESTION, "-m", "dyprag", "--translator", "{ws}/translator/other-model.safetensors"],
     "was made for tiny-llama", {}),
    ("translator-reference-truncated", ["ask", QUESTION, "-m", "dyprag", "--translator", "{ws}/translator/truncated.pt"],
     "cannot be read", {}),
    ("translator-reference-garbage", ["ask", QUESTION, "-m", "dyprag", "--translator", "{ws}/translator/garbage.pt"], "cannot be read", {}),
    ("lora-store-corrupt-file", ["ask", QUESTION, "-m", "prag", "--store", "{ws}/store"], "is corrupt", {}),
    ("model-path-is-a-file", ["ask", "q", "--model", "{ws}/model/a-file.txt"], "is not a Hugging Face model directory", {}),
    ("model-config-not-json", ["ask", "q", "--model", "{ws}/model/bad-config"], "config.json is not valid JSON", {}),
    ("model-without-weights", ["ask", "q", "--model", "{ws}/model/no-weights"], "has no weight files", {}),
    ("model-unsupported-architecture", ["ask", "q", "--model", "{ws}/model/gpt2"], "unsupported architecture GPT2LMHeadModel", {}),
    ("encode-shard-3-of-2", ["encode", "--augment", "{ws}/aug/aug.json", "--shard", "3/2"], "need 0 <= i < n", {}),
    ("encode-limit-0", ["encode", "--augment", "{ws}/aug/aug.json", "--limit", "0"], "--limit must be at least 1", {}),
    ("augment-file-not-json", ["encode", "--augment", "{ws}/aug/garbage.json"], "is not valid JSON", {}),
    ("train-checkpoint-corrupt", ["train", "--augment", "{ws}/aug/aug.json", "--store", "{ws}/train-store", "--out",
                                  "{ws}/train/translator.safetensors"], "cannot be read", {}),
    ("bench-scale-and-soak", ["bench", "--scale", "--soak"], "--scale, --soak and --recipes each run instead of the rest", {}),
    ("eval-reranker-model-without-dynamic", ["eval", "--data", "{ws}/qa/ok.jsonl", "--reranker-model", "{ws}/model/gpt2"],
     "--reranker-model needs --rerank dynamic", {}),
    ("tui-reranker-model-without-dynamic", ["tui", "--reranker-model", "{ws}/model/gpt2"], "--reranker-model needs --rerank dynamic", {}),
    ("eval-max-new-tokens-0-in-env", ["eval", "--data", "{ws}/qa/ok.jsonl"], "max-new-tokens must be at least 1, got 0",
     {"PRAG_MAX_NEW_TOKENS": "0"}),
    ("train-lr-0", ["train", "--augment", "{ws}/aug/aug.json", "--lr", "0"], "--lr must be positive, got 0", {}),
    ("train-locality-negative", ["train", "--augment", "{ws}/aug/aug.json", "--locality-weight", "-1"],
     "--locality-weight cannot be negative, got -1", {}),
    ("train-locality-batch-1", ["train", "--augment", "{ws}/aug/aug.json", "--locality-weight", "1", "--batch-size", "1"],
     "--locality-weight needs another passage's LoRA in the same batch", {}),
]
RECHECKED = [
    ("question-empty", ["ask", ""], "question is empty", {}),
    ("question-whitespace", ["ask", "  \t "], "question is empty", {}),
    ("question-10000-chars", ["ask", "x" * 10_000], "the limit is", {}),
    ("method-unknown", ["ask", "q", "--methods", "rag,nope"], "unknown method", {}),
    ("top-k-0", ["ask", "q", "--top-k", "0"], "top-k must be at least 1", {}),
    ("corpus-missing", ["ask", "q", "--corpus", "{ws}/corpus/none.jsonl"], "does not exist", {}),
    ("corpus-invalid-json-line", ["ask", "q", "--corpus", "{ws}/corpus/invalid.jsonl"], "invalid.jsonl:2 is not valid JSON", {}),
    ("model-missing", ["ask", "q", "--model", "{ws}/model/none"], "does not exist", {}),
    ("model-not-causal-lm", ["ask", "q", "--model", "{ws}/model/encoder"], "not a causal LM", {}),
    ("qa-missing-answers", ["eval", "--data", "{ws}/qa/no-answers.jsonl"], '"answers" must be a non-empty list', {}),
    ("qa-duplicate-id", ["eval", "--data", "{ws}/qa/twice.jsonl"], "appears twice", {}),
    ("eval-limit-0", ["eval", "--data", "{ws}/qa/ok.jsonl", "--limit", "0"], "limit must be at least 1", {}),
    ("encode-epochs-0", ["encode", "--augment", "{ws}/aug/aug.json", "--epochs", "0"], "--epochs must be at least 1, got 0", {}),
    ("train-p-0", ["train", "--augment", "{ws}/aug/aug.json", "--p", "0"], "--p must be at least 1, got 0", {}),
]


def _cache_stats() -> dict[Path, tuple[int, int]]:
    """Size and mtime of the shared converted model (hashing 500 MB per case would be slow)."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in SHARED_MODEL_CACHE.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", NEW + RECHECKED, ids=[c[0] for c in NEW + RECHECKED])
def test_bad_input_is_one_line_exit_2_and_leaves_every_file_alone(case, ws, isolated_home):
    name, template, needle, extra_env = case
    args = [a.format(ws=ws) for a in template]
    env = {k: v.format(ws=ws) for k, v in extra_env.items()}
    _write(isolated_home / "tui-history.txt", "Who wrote Hamlet?\n")  # a user's own file in PRAG_HOME
    _write(isolated_home / "loras" / "keep.safetensors", b"not ours to touch")
    folders = (ws, isolated_home, REPO / "sample_corpus", REPO / "assets")
    before, cache_before = snapshot(*folders), _cache_stats()

    result = run_cli(*args, timeout=600, cwd=ws, env=env)

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, f"{name}: exit {result.returncode}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1, f"{name}: expected one line on stderr, got {lines}"
    assert needle in lines[0], f"{name}: {lines[0]!r} does not say {needle!r}"
    assert changed_files(before, snapshot(*folders)) == []
    assert _cache_stats() == cache_before
    assert temp_files(*folders) == []


# --- the same inputs through the engine's own functions (no CLI, no subprocess) -----------------------


def test_engine_raises_one_line_errors_and_leaves_every_file_alone(ws, loaded):
    from engine.config import load_settings
    from engine.explorer import Explorer, validate_question
    from engine.models import load_model
    from engine.offline.encode import parse_shard
    from engine.offline.records import load_augment
    from engine.qa import load_qa
    from engine.translator import load_translator

    store = LoraStore(ws / "store", loaded.model_id, recipe_config(DEFAULT_RECIPE))
    explorer = Explorer(loaded, BM25Retriever(load_corpus(None)), store, None, "no translator")
    hits = explorer.retrieve(QUESTION, 3)
    calls = {
        "empty question": lambda: validate_question(" \n "),
        "long question": lambda: validate_question("y" * 10_000),
        "top-k 0": lambda: explorer.retrieve(QUESTION, 0),
        "max-new-tokens 0": lambda: explorer.compare(QUESTION, hits, max_new_tokens=0),
        "empty corpus": lambda: load_corpus(ws / "corpus" / "empty.jsonl"),
        "binary corpus": lambda: load_corpus(ws / "corpus" / "binary.jsonl"),
        "latin-1 corpus": lambda: load_corpus(ws / "corpus" / "latin1.jsonl"),
        "corpus line without text": lambda: load_corpus(ws / "corpus" / "no-text.jsonl"),
        "QA passage without text": lambda: load_qa(ws / "qa" / "passage-without-text.jsonl"),
        "QA line not an object": lambda: load_qa(ws / "qa" / "not-an-object.jsonl"),
        "truncated translator": lambda: load_translator(ws / "translator" / "truncated.safetensors", loaded.arch),
        "garbage translator": lambda: load_translator(ws / "translator" / "garbage.safetensors", loaded.arch),
        "translator for another model": lambda: load_translator(ws / "translator" / "other-model.safetensors", loaded.arch),
        "truncated reference translator": lambda: load_translator(ws / "translator" / "truncated.pt", loaded.arch),
        "corrupt stored LoRA": lambda: explorer.prag_adapter([h.passage for h in hits]),
        "model path is a file": lambda: load_model(ws / "model" / "a-file.txt", SHARED_MODEL_CACHE),
        "model config not JSON": lambda: load_model(ws / "model" / "bad-config", SHARED_MODEL_CACHE),
        "unsupported architecture": lambda: load_model(ws / "model" / "gpt2", SHARED_MODEL_CACHE),
        "shard 3/2": lambda: parse_shard("3/2"),
        "augmentation not JSON": lambda: load_augment(ws / "aug" / "garbage.json"),
        "top-k not a number": lambda: load_settings({"top_k": "x"}),
    }
    before = snapshot(ws)
    for what, call in calls.items():
        with pytest.raises(PragError) as info:
            call()
        line = info.value.one_line()
        assert line.strip() and "\n" not in line, f"{what}: {line!r}"
        assert info.value.hint, f"{what}: no hint on what to do ({line!r})"
    assert changed_files(before, snapshot(ws)) == []
    # the PRAG answer of a comparison reports the corrupt LoRA instead of crashing the other methods
    from engine.methods import parse_methods

    comparison = explorer.compare(QUESTION, hits, parse_methods("vanilla,prag"), max_new_tokens=2)
    assert comparison.answer("vanilla").error is None and "is corrupt" in (comparison.answer("prag").error or "")
    assert changed_files(before, snapshot(ws)) == []
