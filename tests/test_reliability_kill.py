"""SIGKILL during `prag encode`, `prag train` and `prag eval`, at exact points (tests/_kill.py): the rerun
completes, its outputs equal an uninterrupted run's, and no temp file is left behind.

The timer-based kills in test_offline_encode.py, test_offline_train.py and test_evaluate.py hit
"somewhere after the first item"; these hit named points on every run: an atomic write with its
temp file complete but not renamed, work done in memory but not saved, a question half written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from engine.adapters import load_adapter
from engine.corpus import make_passage, sample_questions_path
from engine.evaluate import EvalOptions, evaluate
from engine.methods import METHODS
from engine.offline.encode import encode_records
from engine.offline.records import AugmentFile, save_augment
from engine.offline.train import TrainConfig, checkpoint_path, embedding_dir, train_translator
from engine.store import LoraStore
from tests._kill import KillPoint, prag, run_killed, temp_files
from tests.test_offline_encode import same_files, short_records
from tests.test_offline_train import sidecar

pytestmark = pytest.mark.model

# --- encode ----------------------------------------------------------------------------------------------

ENCODE_POINTS = [
    # (kill point, LoRAs stored when it dies, temp files it leaves); 3 passages of 2 steps each
    (KillPoint("first-lora-written-not-renamed", "engine.atomic:_umask", 1, "before"), 0, 1),
    (KillPoint("second-lora-trained-not-stored", "engine.offline.encode:train_lora", 2, "after"), 1, 0),
    (KillPoint("third-passage-mid-training", "torch.optim:AdamW.step", 5, "before"), 2, 0),
]


@pytest.fixture(scope="module")
def encode_data(loaded, tmp_path_factory):
    root = tmp_path_factory.mktemp("kill-encode")
    records = short_records(3)
    save_augment(root / "aug.json", AugmentFile("handmade", records))
    whole = LoraStore(root / "whole", loaded.model_id)
    encode_records(loaded, records, whole, "handmade")
    return root / "aug.json", whole


@pytest.mark.parametrize("point, stored, temps", ENCODE_POINTS, ids=[p[0].name for p in ENCODE_POINTS])
def test_encode_killed_then_rerun_equals_an_uninterrupted_run(point, stored, temps, encode_data, loaded, tmp_path):
    aug, whole = encode_data
    killed = LoraStore(tmp_path / "store", loaded.model_id)
    args = ("encode", "--augment", str(aug), "--store", str(killed.root), "--recipe", "reference")

    run_killed(args, point)
    assert len(killed.keys()) == stored and len(temp_files(tmp_path)) == temps
    for path in killed.dir.glob("*.safetensors"):
        load_adapter(path)  # what is there is whole

    rerun = prag(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"encoded {3 - stored} LoRAs" in rerun.stdout and f"({stored} already in the store)" in rerun.stdout
    assert sorted(p.name for p in killed.dir.iterdir()) == sorted(p.name for p in whole.dir.iterdir())
    assert same_files(killed.dir, whole.dir)  # bit for bit, metadata included
    assert temp_files(tmp_path) == []


# --- train -----------------------------------------------------------------------------------------------

TRAIN_CONFIG = TrainConfig(epochs=1, learning_rate=1e-3, checkpoint_every=1)
TRAIN_ARGS = ("--epochs", "1", "--lr", "1e-3", "--checkpoint-every", "1")
"""The same run from Python and from the command line: 2 passages x 2 examples = 4 steps, a checkpoint after each."""
TRAIN_POINTS = [
    KillPoint("checkpoint-written-not-renamed", "torch:save", 2, "after"),
    KillPoint("step-done-not-checkpointed", "engine.offline.train:save_checkpoint", 3, "before"),
    KillPoint("weights-written-sidecar-not", "engine.atomic:write_text", 1, "before"),
    KillPoint("embedding-written-not-renamed", "engine.atomic:_umask", 1, "before"),
]


@pytest.fixture(scope="module")
def train_data(loaded, tmp_path_factory):
    """Two encoded passages and the uninterrupted CLI-equivalent run (same config as the CLI flags)."""
    root = tmp_path_factory.mktemp("kill-train")
    records = short_records(2)
    save_augment(root / "aug.json", AugmentFile("handmade", records))
    store = LoraStore(root / "loras", loaded.model_id)
    encode_records(loaded, records, store, "handmade")
    out = root / "whole" / "translator.safetensors"
    train_translator(loaded, records, store, out, TRAIN_CONFIG, info={"command": "test"}, export=True)
    shutil.rmtree(embedding_dir(store))  # each killed run computes (and may die writing) its own
    return root / "aug.json", store, out


@pytest.mark.parametrize("point", TRAIN_POINTS, ids=lambda p: p.name)
def test_train_killed_then_rerun_equals_an_uninterrupted_run(point, train_data, tmp_path):
    aug, store, whole = train_data
    shutil.copytree(store.root, tmp_path / "loras")
    out = tmp_path / "out" / "translator.safetensors"
    args = ("train", "--augment", str(aug), "--store", str(tmp_path / "loras"), "--out", str(out), *TRAIN_ARGS, "--export-reference")

    run_killed(args, point)
    finished = out.with_suffix(".json").exists()
    assert not finished  # really interrupted: no sidecar, so no usable translator yet

    rerun = prag(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert same_files(out.parent, whole.parent, "translator.safetensors")
    assert sidecar(out) == sidecar(whole)
    ours, theirs = (torch.load(p.with_suffix(".pt"), weights_only=True)["model_state_dict"] for p in (out, whole))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert checkpoint_path(out).is_file()
    assert temp_files(tmp_path) == []


# --- eval ------------------------------------------------------------------------------------------------

QUESTION_IDS = ("sq-001", "sq-002", "sq-049")
EVAL_POINTS = [
    # (kill point, prediction lines on disk per method when it dies: vanilla, rag)
    (KillPoint("one-method-of-a-question-written", "engine.evaluate:PredictionFile.append", 3, "after"), (2, 1)),
    (KillPoint("answers-generated-not-written", "engine.generate:generate_rows", 2, "after"), (1, 1)),
    (KillPoint("results-written-not-renamed", "engine.atomic:_umask", 2, "before"), (3, 3)),
]


@pytest.fixture(scope="module")
def eval_data(loaded, tmp_path_factory):
    """A 3-question QA file (2 answerable, 1 counterfactual) and its uninterrupted vanilla + RAG run."""
    from engine.explorer import Explorer
    from engine.retrieval import BM25Retriever

    root = tmp_path_factory.mktemp("kill-eval")
    rows = {json.loads(line)["id"]: line for line in sample_questions_path().read_text(encoding="utf-8").splitlines() if line.strip()}
    qa = root / "sample-qa.jsonl"
    qa.write_text("".join(rows[i] + "\n" for i in QUESTION_IDS), encoding="utf-8")
    explorer = Explorer(loaded, BM25Retriever([make_passage("Placeholder index.", "unused")]), LoraStore(root / "loras", loaded.model_id),
                        None, "no translator")
    options = EvalOptions(data=qa, methods=(METHODS["vanilla"], METHODS["rag"]), limit=3, max_new_tokens=6, out_dir=root / "whole")
    return qa, evaluate(options, explorer=explorer)


def _predictions(path: Path) -> dict[str, tuple]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len({r["id"] for r in lines}) == len(lines), f"duplicate ids in {path.name}"
    return {r["id"]: (r["prediction"], r["em"], r["f1"], r["tokens"], r["error"]) for r in lines}


def _scores(folder: Path) -> dict:
    data = json.loads(next(folder.glob("*.results.json")).read_text(encoding="utf-8"))
    return {name: {k: v for k, v in row.items() if k != "latency_s"} for name, row in data["methods"].items()}


@pytest.mark.parametrize("point, lines", EVAL_POINTS, ids=[p[0].name for p in EVAL_POINTS])
def test_eval_killed_then_rerun_equals_an_uninterrupted_run(point, lines, eval_data, tmp_path):
    qa, reference = eval_data
    out = tmp_path / "out"
    args = ("eval", "--data", str(qa), "--limit", "3", "--methods", "vanilla,rag", "--max-new-tokens", "6", "--out", str(out))

    run_killed(args, point)
    files = {name: out / path.name for name, path in reference.predictions.items()}
    on_disk = tuple(files[m].read_bytes().count(b"\n") if files[m].exists() else 0 for m in ("vanilla", "rag"))
    assert on_disk == lines

    rerun = prag(*args, "--json")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(rerun.stdout)["n"] == 3
    whole = reference.predictions["vanilla"].parent
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.iterdir())
    for name, path in reference.predictions.items():
        assert _predictions(files[name]) == _predictions(path), name
    assert _scores(out) == _scores(whole)
    assert temp_files(tmp_path) == []
