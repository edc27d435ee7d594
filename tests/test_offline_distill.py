"""`prag train --objective distill`: no stored LoRAs, losses that fall, checkpoints that resume bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from engine.corpus import Passage
from engine.errors import ArtifactError, Cancelled, InputError
from engine.offline.distill import DistillConfig, DistillExample, build_distill_examples, distill_translator
from engine.offline.records import AugmentFile, save_augment
from engine.offline.train import checkpoint_path
from engine.translator import load_translator
from tests._kill import KillPoint, prag, run_killed
from tests.test_offline_encode import same_files, short_records

REPO = Path(__file__).resolve().parent.parent
CONFIG = DistillConfig(rank=2, first_layer=24, p=2, epochs=2, learning_rate=1e-2, batch_size=2, checkpoint_every=1)
CLI_ARGS = ("--objective", "distill", "--rank", "2", "--first-layer", "24", "--epochs", "2", "--lr", "1e-2", "--batch-size", "2",
            "--checkpoint-every", "1")


def sidecar(out: Path) -> dict:
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    for key in ("command", "data_files", "aug_model", "seconds_per_step"):  # how and how fast it ran, not what it learned
        data["training"].pop(key, None)
    return data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill-data")
    records = short_records(3)
    save_augment(root / "aug.json", AugmentFile("handmade", records))
    return root, records


@pytest.fixture(scope="module")
def uninterrupted(loaded, data):
    root, records = data
    out = root / "whole" / "translator.safetensors"
    events = []
    summary = distill_translator(loaded, records, root / "embeddings", out, CONFIG, events.append, info={"command": "test"})
    return out, summary, events


def test_examples_pair_a_question_only_student_with_a_reading_teacher(loaded, data):
    _, records = data
    examples = build_distill_examples(loaded.tokenizer, records, per_passage=0)
    assert len(examples) == 3
    for example, record in zip(examples, records, strict=True):
        assert example.student[-example.answer:] == example.teacher[-example.answer:]
        assert len(example.teacher) > len(example.student)  # the passage is in the teacher's prompt only
        assert record.passage.text in loaded.tokenizer.decode(example.teacher)
        assert record.passage.text not in loaded.tokenizer.decode(example.student)


def test_distillation_needs_no_lora_and_its_losses_fall(loaded, uninterrupted):
    out, summary, events = uninterrupted
    assert summary.steps == summary.new_steps == 4  # 3 examples in batches of 2, 2 epochs
    first, last = json.loads(out.with_suffix(".json").read_text())["loss_history"]
    assert last["lm"] < first["lm"] and last["total"] < first["total"]
    assert {e.label for e in events} == {"Embedding passages", "Distilling translator"}
    translator = load_translator(out, loaded.arch)
    assert translator.config.first_layer == 24 and translator.config.rank == 2
    adapter = translator.adapters(torch.randn(1, loaded.arch.hidden_size))[0]
    assert {layer for layer, _ in adapter.pairs} == set(range(24, loaded.arch.num_layers))
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["training"]["objective"] == "distill" and meta["training"]["passages"] == 3
    assert meta["training"]["config"]["kl_weight"] == 1.0 and "KL(teacher" in meta["training"]["loss"]


def test_ctrl_c_saves_a_checkpoint_and_the_rerun_matches(loaded, data, uninterrupted, tmp_path):
    root, records = data
    out = tmp_path / "translator.safetensors"
    cancel = threading.Event()

    def stop_after_two(event) -> None:
        if event.label == "Distilling translator" and event.done == 2:
            cancel.set()

    config = DistillConfig(**{**CONFIG.__dict__, "checkpoint_every": 0})
    with pytest.raises(Cancelled, match="stopped after step 2 of 4"):
        distill_translator(loaded, records, root / "embeddings", out, config, stop_after_two, cancel, info={"command": "test"})
    assert checkpoint_path(out).is_file() and not out.exists()
    resumed = distill_translator(loaded, records, root / "embeddings", out, config, info={"command": "test"})
    assert resumed.resumed_from == 2 and resumed.new_steps == 2
    assert same_files(out.parent, uninterrupted[0].parent, "translator.safetensors")
    assert sidecar(out) == sidecar(uninterrupted[0])


def test_other_settings_and_bad_input_are_refused(loaded, data, uninterrupted):
    root, records = data
    out, _, _ = uninterrupted
    with pytest.raises(ArtifactError, match="other data or settings"):
        distill_translator(loaded, records, root / "embeddings", out, DistillConfig(**{**CONFIG.__dict__, "learning_rate": 5e-3}))
    with pytest.raises(InputError, match=".safetensors"):
        distill_translator(loaded, records, root / "embeddings", out.with_suffix(".pt"), CONFIG)
    with pytest.raises(InputError, match="batch size"):
        DistillConfig(batch_size=0)


def test_sigkill_mid_distillation_then_rerun_matches_an_uninterrupted_run(loaded, data, uninterrupted, tmp_path):
    root, _ = data
    out = tmp_path / "killed" / "translator.safetensors"
    args = ("train", "--augment", str(root / "aug.json"), "--out", str(out), *CLI_ARGS)
    # Killed right after the second checkpoint (step 2 of 4) is on disk: a power cut mid-run.
    run_killed(args, KillPoint("after-second-checkpoint", "engine.offline.train:save_checkpoint", call=2))
    assert checkpoint_path(out).is_file() and not out.exists()
    resumed = prag(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step 2" in resumed.stdout and "(distill)" in resumed.stdout
    assert same_files(out.parent, uninterrupted[0].parent, "translator.safetensors")
    assert sidecar(out) == sidecar(uninterrupted[0])


def test_cli_bad_objective_is_one_line(data, tmp_path):
    root, _ = data
    result = subprocess.run([sys.executable, "-m", "engine.cli.app", "train", "--augment", str(root / "aug.json"),
                             "--objective", "magic"], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PRAG_HOME": str(tmp_path)})
    assert result.returncode == 2 and "unknown objective 'magic'" in result.stderr and "Traceback" not in result.stderr


def test_max_steps_writes_a_partial_translator_and_a_later_run_goes_on(loaded, data, uninterrupted, tmp_path):
    root, records = data
    out = tmp_path / "translator.safetensors"
    partial = distill_translator(loaded, records, root / "embeddings", out, DistillConfig(**{**CONFIG.__dict__, "max_steps": 3}),
                                 info={"command": "test"})
    assert partial.steps == 3 and out.is_file()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["training"]["steps"] == 3 and meta["training"]["examples_seen"] == 5  # epoch 1 (3) + one batch of 2
    assert meta["loss_history"][-1]["partial"] == "1 steps"
    rest = distill_translator(loaded, records, root / "embeddings", out, CONFIG, info={"command": "test"})
    assert rest.resumed_from == 3 and rest.new_steps == 1
    assert same_files(out.parent, uninterrupted[0].parent, "translator.safetensors")
    training = json.loads(out.with_suffix(".json").read_text())["training"]
    assert training["timed_steps"] == 4 and training["seconds_per_step"] > 0  # the first run's steps are timed too


def test_a_passages_distillation_pairs_are_its_first_or_drawn_from_all_of_it():
    from engine.corpus import make_passage
    from engine.offline.distill import chosen_pairs
    from engine.offline.facts import fact_pairs
    from engine.offline.records import AugmentRecord

    text = " ".join(f"The mill at Brask{i} was rebuilt in {1700 + i} by the mason Odo Quell{i}." for i in range(12))
    passage = make_passage(text, "Mills")
    record = AugmentRecord(passage, text, fact_pairs(passage))
    assert chosen_pairs(record, 4, seed=0) == record.qa[:4]  # the default: the opening sentence's pairs
    picked = chosen_pairs(record, 4, seed=0, draw="random")
    assert picked == chosen_pairs(record, 4, seed=0, draw="random") != chosen_pairs(record, 4, seed=1, draw="random")
    assert len(picked) == 4 and all(pair in record.qa for pair in picked)
    positions = [record.qa.index(pair) for pair in picked]
    assert positions == sorted(positions) and positions != [0, 1, 2, 3]  # passage order, not just the opening sentence
    assert chosen_pairs(record, 0, seed=0, draw="random") == record.qa and chosen_pairs(record, 999, seed=0) == record.qa
    with pytest.raises(InputError, match="unknown draw"):
        DistillConfig(draw="last")


def test_matching_hidden_states_is_a_term_that_trains_the_translator(loaded, data):
    from engine.offline.distill import distill_loss, make_distill_translator
    from engine.translator import passage_embeddings

    _, records = data
    batch = build_distill_examples(loaded.tokenizer, records, per_passage=1)[:2]
    embeddings = torch.stack([passage_embeddings(loaded, [e.passage.text])[0] for e in batch])
    off = DistillConfig(**{**CONFIG.__dict__, "hidden_weight": 0.0})
    on = DistillConfig(**{**CONFIG.__dict__, "hidden_weight": 2.0})
    translator = make_distill_translator(loaded, on, embeddings)
    assert float(distill_loss(loaded, translator, embeddings, batch, off)["hidden"]) == 0.0  # off: not even computed
    losses = distill_loss(loaded, translator, embeddings, batch, on)
    assert 0.0 < float(losses["hidden"].detach()) < 10.0  # relative to the teacher's states: order one, whatever the width
    expected = losses["lm"] + on.kl_weight * losses["kl"] + on.combine_weight * losses["combine"] + 2.0 * losses["hidden"]
    assert torch.allclose(losses["total"], expected)
    translator.zero_grad()
    losses["hidden"].backward()
    grads = [w.grad for w in translator.parameters() if w.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)  # it reaches the translator, not only the model
    with pytest.raises(InputError, match="hidden-state weight"):
        DistillConfig(hidden_weight=-1.0)


def test_other_passage_rows_pair_each_row_with_a_different_passage():
    from engine.offline.distill import other_passage_rows

    def batch(*keys: str) -> list:
        return [DistillExample(Passage(key, key, f"text of {key}"), [1], [1], 1) for key in keys]

    assert other_passage_rows(batch("a", "b", "c")) == [(0, 1), (1, 2), (2, 0)]
    assert other_passage_rows(batch("a", "a", "b")) == [(0, 2), (1, 2), (2, 0)]  # the next row of *another* passage
    assert other_passage_rows(batch("a", "a")) == []  # one passage: nothing to be local against


def test_locality_is_a_term_that_is_zero_for_a_lora_that_changes_nothing_and_trains_the_translator(loaded, data):
    from engine.offline.distill import distill_loss, make_distill_translator
    from engine.translator import passage_embeddings

    _, records = data
    batch = build_distill_examples(loaded.tokenizer, records, per_passage=1)[:2]
    embeddings = torch.stack([passage_embeddings(loaded, [e.passage.text])[0] for e in batch])
    on = DistillConfig(**{**CONFIG.__dict__, "locality_weight": 3.0})
    translator = make_distill_translator(loaded, on, embeddings)  # B starts at zero: every generated LoRA is a no-op
    assert float(distill_loss(loaded, translator, embeddings, batch, on)["locality"].detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for weight in translator.parameters():
            weight.add_(torch.randn_like(weight) * 0.5)
    assert float(distill_loss(loaded, translator, embeddings, batch, CONFIG)["locality"]) == 0.0  # off: not even computed
    losses = distill_loss(loaded, translator, embeddings, batch, on)
    assert float(losses["locality"].detach()) > 0.0
    expected = losses["lm"] + on.kl_weight * losses["kl"] + on.combine_weight * losses["combine"] + 3.0 * losses["locality"]
    assert torch.allclose(losses["total"], expected)
    translator.zero_grad()
    losses["locality"].backward()
    assert any(float(w.grad.abs().sum()) > 0 for w in translator.parameters() if w.grad is not None)
    with pytest.raises(InputError, match="locality weight"):
        DistillConfig(locality_weight=-1.0)
    with pytest.raises(InputError, match="another passage"):
        DistillConfig(locality_weight=1.0, batch_size=1)


def test_init_goes_on_from_a_trained_translator_and_the_sidecar_says_so(loaded, data, uninterrupted, tmp_path):
    root, records = data
    start, _, _ = uninterrupted
    # A learning rate too small to move far in one epoch: each run's losses are its start's.
    one_epoch = DistillConfig(**{**CONFIG.__dict__, "epochs": 1, "learning_rate": 1e-6})
    warm = distill_translator(loaded, records, root / "embeddings", tmp_path / "warm.safetensors", one_epoch, init=start,
                              info={"command": "test"})
    cold = distill_translator(loaded, records, root / "embeddings", tmp_path / "cold.safetensors", one_epoch, info={"command": "test"})
    trained = json.loads(start.with_suffix(".json").read_text())["final_losses"]
    assert warm.final["lm"] < cold.final["lm"] / 2 and warm.final["lm"] == pytest.approx(trained["lm"], rel=0.2)
    training = json.loads((tmp_path / "warm.json").read_text())["training"]
    assert training["init"]["path"] == str(start.resolve()) and training["init"]["passages"] == 3
    assert training["passages_with_init"] == 6 and training["passages"] == 3
    # A checkpoint belongs to its start: the same run from another init does not resume it.
    with pytest.raises(ArtifactError, match="other data or settings"):
        distill_translator(loaded, records, root / "embeddings", tmp_path / "cold.safetensors",
                           DistillConfig(**{**one_epoch.__dict__, "max_steps": 5}), init=start)


def test_init_with_another_shape_is_refused_in_one_line(loaded, data, uninterrupted, tmp_path):
    root, _ = data
    start, _, _ = uninterrupted
    args = ("train", "--augment", str(root / "aug.json"), "--out", str(tmp_path / "t.safetensors"), "--init", str(start),
            *CLI_ARGS[:2], "--rank", "4", "--first-layer", "24")
    result = prag(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has rank 2, p 2, first layer 24" in result.stderr and "--rank 2 --p 2 --first-layer 24" in result.stderr
    past = prag("train", "--augment", str(root / "aug.json"), "--offset", "3", *CLI_ARGS)
    assert past.returncode == 2 and "none after --offset 3" in past.stderr and "Traceback" not in past.stderr
    missing = prag("train", "--augment", str(root / "aug.json"), "--init", str(tmp_path / "none.safetensors"), *CLI_ARGS)
    assert missing.returncode == 2 and "--init translator" in missing.stderr and "does not exist" in missing.stderr
