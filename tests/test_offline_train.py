"""`prag train`: the DyPRAG objective, checkpoints that resume bit for bit, both file formats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from engine.errors import ArtifactError, Cancelled, InputError
from engine.models import ModelArch
from engine.offline.encode import encode_records
from engine.offline.records import AugmentFile, save_augment
from engine.offline.train import (
    TrainConfig,
    build_examples,
    checkpoint_path,
    fingerprint,
    load_checkpoint,
    make_translator,
    train_translator,
)
from engine.store import LoraStore
from engine.translator import export_reference, load_translator, save_translator
from tests.test_offline_encode import file_content, same_files, short_records

REPO = Path(__file__).resolve().parent.parent
CONFIG = TrainConfig(epochs=2, learning_rate=1e-3, checkpoint_every=1)
"""Small data, so a larger step than the reference's 1e-5 to see the losses move."""
CLI_ARGS = ("--epochs", "2", "--lr", "1e-3", "--checkpoint-every", "1")


@pytest.fixture(scope="module")
def encoded(loaded, tmp_path_factory):
    """Two short passages, augmented and encoded once for the whole module."""
    root = tmp_path_factory.mktemp("train-data")
    records = short_records(2)
    save_augment(root / "aug.json", AugmentFile("handmade", records))
    store = LoraStore(root / "loras", loaded.model_id)
    encode_records(loaded, records, store, "handmade")
    return root, records, store


@pytest.fixture(scope="module")
def uninterrupted(loaded, encoded):
    root, records, store = encoded
    out = root / "whole" / "translator.safetensors"
    events = []
    summary = train_translator(loaded, records, store, out, CONFIG, events.append, info={"command": "test"}, export=True)
    return out, summary, events


def arch_tiny() -> ModelArch:
    return ModelArch("tiny", hidden_size=32, intermediate_size=64, num_layers=2)


def sidecar(out: Path) -> dict:
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    for key in ("command", "data_files", "aug_model", "seconds_per_step"):  # how it was called and how fast, not what it learned
        data["training"].pop(key, None)
    return data


# --- the objective and the outputs --------------------------------------------------------------------


def test_losses_are_reported_and_fall(uninterrupted):
    out, summary, events = uninterrupted
    assert summary.steps == summary.new_steps == 8 and summary.resumed_from is None  # 2 passages x 2 examples x 2 epochs
    assert {"lm", "kl", "mse", "total"} == set(summary.final)
    labels = {e.label for e in events}
    assert labels == {"Embedding passages", "Training translator"}
    last = [e for e in events if e.label == "Training translator"][-1]
    assert last.done == last.total == 8 and all(f"{t} " in last.info for t in ("lm", "kl", "mse"))
    history = json.loads(out.with_suffix(".json").read_text())["loss_history"]
    assert len(history) == 2 and history[1]["mse"] < history[0]["mse"] and history[1]["total"] < history[0]["total"]


def test_sidecar_describes_model_data_and_training(loaded, uninterrupted):
    out, summary, _ = uninterrupted
    meta = json.loads(out.with_suffix(".json").read_text())
    assert (meta["model_id"], meta["hidden_size"], meta["num_layers"], meta["rank"], meta["p"]) == (loaded.model_id, 576, 30, 2, 2)
    training = meta["training"]
    assert (training["passages"], training["examples"], training["steps"], training["command"]) == (2, 4, 8, "test")
    assert meta["final_losses"] == summary.final and training["learning_rate"] == 1e-3


def test_translator_round_trips_through_both_formats(loaded, uninterrupted):
    out, summary, _ = uninterrupted
    ours, reference = load_translator(out, loaded.arch), load_translator(summary.reference, loaded.arch)
    embeddings = torch.randn(3, loaded.arch.hidden_size)
    with torch.no_grad():
        left, right = ours.adapters(embeddings), reference.adapters(embeddings)
    for a, b in zip(left, right, strict=False):
        for key in a.pairs:
            assert torch.equal(a.pairs[key][0], b.pairs[key][0]) and torch.equal(a.pairs[key][1], b.pairs[key][1])
    assert max(row["up_proj"] for row in left[0].layer_norms()) > 0  # trained: not the 1e-7 init any more
    # and back: the .pt re-saved as ours gives the same weights again
    save_translator(reference, out.parent / "again.safetensors")
    again = load_translator(out.parent / "again.safetensors", loaded.arch)
    assert all(torch.equal(again.weights[k], ours.weights[k]) for k in ours.weights)


def test_shape_mismatch_is_refused_with_one_line(loaded, tmp_path):
    tiny = make_translator_for(arch_tiny())
    save_translator(tiny, tmp_path / "tiny.safetensors")
    export_reference(tiny, tmp_path / "tiny.pt")
    for path in (tmp_path / "tiny.safetensors", tmp_path / "tiny.pt"):
        with pytest.raises(ArtifactError) as info:
            load_translator(path, loaded.arch)
        assert "\n" not in info.value.one_line() and ("576" in info.value.one_line() or "needs" in info.value.one_line())
    result = subprocess.run([sys.executable, "-m", "engine.cli.app", "ask", "Who founded Velmora?", "--methods", "dyprag",
                             "--translator", str(tmp_path / "tiny.pt")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "tiny.pt" in lines[0], result.stderr


def make_translator_for(arch: ModelArch):
    from engine.translator import ParameterTranslator, TranslatorConfig

    return ParameterTranslator(TranslatorConfig(arch))


# --- resuming ---------------------------------------------------------------------------------------------


def test_rerun_after_finishing_trains_nothing(loaded, encoded, uninterrupted):
    _, records, store = encoded
    out, _, _ = uninterrupted
    before = file_content(out)
    again = train_translator(loaded, records, store, out, CONFIG, info={"command": "test"})
    after = file_content(out)
    assert again.new_steps == 0 and again.steps == 8
    assert before[0] == after[0] and all(torch.equal(before[1][k], after[1][k]) for k in before[1])


def test_ctrl_c_saves_a_checkpoint_and_the_rerun_matches(loaded, encoded, uninterrupted):
    _, records, store = encoded
    out = encoded[0] / "cancelled" / "translator.safetensors"
    cancel = threading.Event()

    def stop_after_three(event) -> None:
        if event.label == "Training translator" and event.done == 3:
            cancel.set()

    config = TrainConfig(epochs=2, learning_rate=1e-3, checkpoint_every=0)  # only the cancel writes a checkpoint mid-epoch
    with pytest.raises(Cancelled, match="stopped after step 3 of 8"):
        train_translator(loaded, records, store, out, config, stop_after_three, cancel, info={"command": "test"})
    assert checkpoint_path(out).is_file() and not out.exists()
    resumed = train_translator(loaded, records, store, out, config, info={"command": "test"}, export=True)
    assert resumed.resumed_from == 3 and resumed.new_steps == 5
    assert same_files(out.parent, uninterrupted[0].parent, "translator.safetensors")
    assert sidecar(out) == sidecar(uninterrupted[0])


def test_checkpoint_of_other_settings_is_refused(loaded, encoded, uninterrupted):
    _, records, store = encoded
    out, _, _ = uninterrupted
    other = TrainConfig(epochs=2, learning_rate=5e-4, checkpoint_every=1)
    with pytest.raises(ArtifactError, match="other data or settings"):
        train_translator(loaded, records, store, out, other)
    translator = make_translator(loaded, 2, CONFIG)
    optimizer = torch.optim.AdamW(translator.parameters(), lr=1e-3)
    examples = build_examples(loaded.tokenizer, records)
    state = load_checkpoint(checkpoint_path(out), translator, optimizer, fingerprint(loaded, store, CONFIG, examples))
    assert (state.epoch, state.index, state.step) == (2, 0, 8)  # torch.load(weights_only=True) reads it back
    with pytest.raises(InputError, match=".safetensors"):
        train_translator(loaded, records, store, out.with_suffix(".pt"), CONFIG)
    with pytest.raises(ArtifactError, match="no PRAG LoRA"):
        train_translator(loaded, records, LoraStore(out.parent / "empty", loaded.model_id), out.parent / "x.safetensors", CONFIG)


def test_sigkill_mid_train_then_rerun_matches_an_uninterrupted_run(loaded, encoded, uninterrupted):
    root, _, store = encoded
    out = root / "killed" / "translator.safetensors"
    args = ("train", "--augment", str(root / "aug.json"), "--store", str(store.root), "--out", str(out), *CLI_ARGS)
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli.app", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None and not checkpoint_path(out).is_file():
            time.sleep(0.02)
        time.sleep(0.3)  # into the next step
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists()  # really interrupted: no final output yet, and no partial one

    resumed = subprocess.run([sys.executable, "-m", "engine.cli.app", *args, "--export-reference"], capture_output=True, text=True,
                             timeout=600, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step" in resumed.stdout and "s/step" in resumed.stdout
    assert same_files(out.parent, uninterrupted[0].parent, "translator.safetensors")
    assert sidecar(out) == sidecar(uninterrupted[0])
    assert torch.load(out.with_suffix(".pt"), weights_only=True)["model_state_dict"].keys() == \
        torch.load(uninterrupted[1].reference, weights_only=True)["model_state_dict"].keys()
    assert not list(out.parent.glob(".*.tmp"))


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    aug = tmp_path / "aug.json"
    save_augment(aug, AugmentFile("handmade", short_records(1)))
    for args, needle in [
        (("--augment", str(tmp_path / "none.json")), "does not exist"),
        (("--augment", str(aug), "--p", "0"), "--p must be at least 1"),
        (("--augment", str(aug), "--lr", "0"), "--lr must be positive"),
        (("--augment", str(aug), "--checkpoint-every", "-1"), "cannot be negative"),
    ]:
        result = subprocess.run([sys.executable, "-m", "engine.cli.app", "train", *args], capture_output=True, text=True, timeout=300,
                                cwd=REPO)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and needle in lines[0], result.stderr


def test_ctrl_c_on_the_cli_saves_and_exits_2_with_one_line(encoded):
    root, _, store = encoded
    out = root / "interrupted" / "translator.safetensors"
    args = ("train", "--augment", str(root / "aug.json"), "--store", str(store.root), "--out", str(out), *CLI_ARGS)
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli.app", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None and not checkpoint_path(out).is_file():
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "checkpoint saved" in lines[0] and "run the same command again" in lines[0]
    assert checkpoint_path(out).is_file() and not out.exists()


def test_embedding_cache_cleans_only_its_own_temp_files(loaded, tmp_path) -> None:
    from engine.corpus import make_passage
    from engine.offline.train import cached_embeddings

    mine = make_passage("Velmora is a hill town in the province of Drasketh.", "Velmora")
    other = make_passage("Harnwick is a port city.", "Harnwick")
    folder = tmp_path / "embeddings"
    folder.mkdir()
    dead = folder / f".{mine.key}.safetensors.k1ll3d.tmp"  # the names atomic_path gives its temps
    busy = folder / f".{other.key}.safetensors.bu5y00.tmp"
    dead.write_bytes(b"half")
    busy.write_bytes(b"another run is writing this")
    cached = cached_embeddings(loaded, [mine], folder)
    assert not dead.exists() and busy.exists()  # the killed run's temp is gone; a concurrent run's is not
    assert cached[mine.key].shape == (loaded.arch.hidden_size,)
