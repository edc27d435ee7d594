"""`prag encode`: the PRAG recipe on the real model (short examples), the store, shards, kills, on-demand encoding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.adapters import load_adapter
from engine.corpus import load_corpus, make_passage
from engine.errors import ArtifactError, InputError
from engine.explorer import Explorer
from engine.offline.encode import (
    OnDemandEncoder,
    augment_cache_path,
    encode_records,
    in_shard,
    initial_pairs,
    lm_losses,
    parse_shard,
    tokenize,
    train_lora,
    training_texts,
)
from engine.offline.records import AugmentFile, AugmentRecord, QAPair, load_augment, save_augment
from engine.prompts import ANSWER_PREFIX, generation_prompt
from engine.retrieval import BM25Retriever
from engine.store import EncodeConfig, LoraStore

REPO = Path(__file__).resolve().parent.parent


def short_records(count: int = 2) -> list[AugmentRecord]:
    """Short passages with one QA pair each: two training steps per passage."""
    facts = [("Velmora", "Velmora was founded in 1638 by salt traders.", "When was Velmora founded?", "1638"),
             ("Quistrel", "Quistrel Dynamics was founded by Odalys Pemberforth.", "Who founded Quistrel Dynamics?", "Odalys Pemberforth"),
             ("Glintfinch", "The glintfinch nests on Tessarin Point.", "Where does the glintfinch nest?", "Tessarin Point")]
    return [AugmentRecord(make_passage(text, title), text.replace(" was ", " had been "), [QAPair(q, a, f"The answer is {a}.")])
            for title, text, q, a in facts[:count]]


def fictional_record() -> AugmentRecord:
    """fict-002 of the sample corpus, with QA pairs that paraphrase (not copy) the test question."""
    passage = next(p for p in load_corpus(None) if p.id == "fict-002")
    pairs = [
        QAPair("Who founded the engineering firm Quistrel Dynamics?", "Odalys Pemberforth",
               "The engineer Odalys Pemberforth founded Quistrel Dynamics."),
        QAPair("In which port city was Quistrel Dynamics founded?", "Harnwick", "Quistrel Dynamics was founded in Harnwick."),
        QAPair("In what year did Odalys Pemberforth found Quistrel Dynamics?", "1987", "Quistrel Dynamics was founded in 1987."),
    ]
    rewrite = ("The firm Quistrel Dynamics makes wind-driven water pumps for small farms. It was set up in 1987 by the engineer "
               "Odalys Pemberforth in Harnwick, a port city. Its silver logo shows a kingfisher on a pump handle.")
    return AugmentRecord(passage, rewrite, pairs)


def file_content(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Header metadata and tensors of a safetensors file (its writer orders header keys arbitrarily)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata(), {name: fh.get_tensor(name) for name in fh.keys()}


def same_files(left: Path, right: Path, pattern: str = "*.safetensors") -> bool:
    names = sorted(p.name for p in left.glob(pattern))
    if names != sorted(p.name for p in right.glob(pattern)) or not names:
        return False
    for name in names:
        (meta_l, tensors_l), (meta_r, tensors_r) = file_content(left / name), file_content(right / name)
        if meta_l != meta_r or tensors_l.keys() != tensors_r.keys() or not all(torch.equal(tensors_l[k], tensors_r[k]) for k in tensors_l):
            return False
    return True


# --- the recipe ----------------------------------------------------------------------------------------


def test_training_examples_follow_the_reference_layout(loaded):
    record = fictional_record()
    texts = training_texts(loaded.tokenizer, record)
    assert len(texts) == 5  # ceil(3/2) = 2 pairs x (passage, rewrite) + 1 question-only
    assert record.passage.text in texts[0] and record.rewrite in texts[1] and record.passage.text in texts[2] and record.rewrite in texts[3]
    assert "Passage 1" not in texts[4]
    for text, pair in zip(texts, [record.qa[0]] * 2 + [record.qa[1]] * 2 + [record.qa[2]], strict=False):
        assert text.endswith(f"{ANSWER_PREFIX} {pair.answer}.")
    # the same prompt inference continues, so training and answering agree token for token
    assert texts[4].startswith(generation_prompt(loaded.tokenizer, record.qa[2].question))


def test_initial_lora_is_a_shared_no_op(loaded):
    first, second = initial_pairs(loaded.arch, EncodeConfig()), initial_pairs(loaded.arch, EncodeConfig())
    assert len(first) == 3 * loaded.arch.num_layers
    for key, (a, b) in first.items():
        assert torch.equal(a, second[key][0]) and not b.any()
        bound = 1 / a.shape[1] ** 0.5  # kaiming-uniform with a=sqrt(5), as peft
        assert a.abs().max() <= bound and a.abs().max() > bound / 2


@pytest.fixture(scope="module")
def fictional_lora(loaded):
    record = fictional_record()
    ids = tokenize(loaded.tokenizer, training_texts(loaded.tokenizer, record))
    trained = train_lora(loaded, ids, EncodeConfig(epochs=2))
    return record, ids, trained


def test_training_loss_decreases(loaded, fictional_lora):
    _, ids, trained = fictional_lora
    before = lm_losses(loaded, ids, None)
    after = lm_losses(loaded, ids, trained.adapter)
    assert sum(after) < 0.8 * sum(before), (before, after)
    steps = len(ids)
    assert sum(trained.losses[steps:]) < sum(trained.losses[:steps])  # second epoch below the first
    assert trained.adapter.scale == 16.0 and trained.adapter.rank == 2
    assert all(p.requires_grad is False for p in loaded.model.parameters())  # the model itself was never trained


# --- the stage: store, skipping, shards -----------------------------------------------------------------


def test_parse_shard():
    assert parse_shard(None) is None and parse_shard("0/1") == (0, 1) and parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(InputError):
            parse_shard(bad)
    passages = [make_passage(f"passage {i}") for i in range(40)]
    shards = [[p for p in passages if in_shard(p, (i, 3))] for i in range(3)]
    assert sorted(p.key for s in shards for p in s) == sorted(p.key for p in passages) and all(shards)


def test_rerun_and_shards_skip_finished_work(loaded, tmp_path):
    records = short_records(2)
    store = LoraStore(tmp_path / "loras", loaded.model_id)
    in_first = sum(in_shard(r.passage, (0, 2)) for r in records)
    first = encode_records(loaded, records, store, "gold", shard=(0, 2))
    second = encode_records(loaded, records, store, "gold", shard=(1, 2))
    assert (first.encoded, second.encoded) == (in_first, 2 - in_first)
    events = []
    again = encode_records(loaded, records, store, "gold", progress=events.append)
    assert (again.encoded, again.skipped) == (0, 2) and events[-1].done == events[-1].total == 2
    assert sorted(store.keys()) == sorted(r.passage.key for r in records)
    adapter = store.get(records[0].passage)
    assert adapter.scale == 16.0 and adapter.meta["aug_model"] == "gold" and adapter.meta["examples"] == 2
    assert not list(store.dir.glob(".*.tmp"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli.app", *args], capture_output=True, text=True, timeout=600,
                          cwd=REPO, env=dict(os.environ))


def test_sigkill_mid_encode_then_rerun_matches_an_uninterrupted_run(loaded, tmp_path):
    records = short_records(3)
    aug = tmp_path / "aug.json"
    save_augment(aug, AugmentFile("handmade", records))
    whole = LoraStore(tmp_path / "whole", loaded.model_id)
    encode_records(loaded, records, whole, "handmade")

    killed_root = tmp_path / "killed"
    killed = LoraStore(killed_root, loaded.model_id)
    args = ("encode", "--augment", str(aug), "--store", str(killed_root), "--recipe", "reference")
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli.app", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None and not killed.keys():
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 1 <= len(killed.keys()) < 3  # really interrupted mid-encode
    for path in killed.dir.glob("*.safetensors"):
        load_adapter(path)  # every finished file is whole

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "already in the store" in resumed.stdout
    assert same_files(killed.dir, whole.dir)  # same files: same tensors bit for bit, same metadata
    assert not list(killed.dir.glob(".*.tmp"))  # the killed writer's temp file is gone


def test_encode_cli_reads_the_reference_file_and_refuses_bad_input(loaded, tmp_path):
    record = short_records(1)[0]
    qa = [pair.to_json() for pair in record.qa]
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps([{"test_id": 0, "question": "q", "answer": ["a"], "passages": [record.passage.text],
                                      "augment": [{"pid": 0, "passage": record.passage.text,
                                                   "llama3.2-1b-instruct_rewrite": record.rewrite, "llama3.2-1b-instruct_qa": qa}]}]))
    store = tmp_path / "store"
    result = run_cli("encode", "--augment", str(reference), "--store", str(store), "--recipe", "reference")
    assert result.returncode == 0, result.stderr
    assert "encoded 1 LoRAs" in result.stdout and "s/passage" in result.stdout
    assert len(LoraStore(store, loaded.model_id).keys()) == 1
    for args, needle in [(("--shard", "2/2"), "need 0 <= i < n"), (("--epochs", "0"), "--epochs must be at least 1")]:
        bad = run_cli("encode", "--augment", str(reference), "--store", str(store), *args)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and needle in bad.stderr, bad.stderr
    missing = run_cli("encode", "--augment", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


# --- on demand (prag ask --encode, the TUI) --------------------------------------------------------------


def test_explorer_encodes_missing_loras_on_demand(loaded, tmp_path):
    record = short_records(1)[0]
    other = make_passage("The Harrow Bridge is made of red sandstone.", "Harrow Bridge")
    tiny = make_passage("Too short.", "Stub")
    store = LoraStore(tmp_path / "loras", loaded.model_id)
    explorer = Explorer(loaded, BM25Retriever([record.passage, other, tiny]), store, None, "no translator",
                        encoder=OnDemandEncoder(loaded))
    # a cached augmentation (e.g. an earlier LLM one) is used as it is
    save_augment(augment_cache_path(store), AugmentFile("smollm2-135m-instruct", [record]))
    events = []
    adapter = explorer.prag_adapter([record.passage], events.append, encode_missing=True)
    assert store.has(record.passage) and adapter.rank == 2
    assert events and events[-1].done == events[-1].total == 1
    with pytest.raises(ArtifactError, match="no PRAG LoRA"):
        explorer.prag_adapter([other], encode_missing=False)
    # a passage nobody augmented gets cloze pairs from its own sentence, cached beside the store
    explorer.prag_adapter([record.passage, other], encode_missing=True)
    assert store.has(other)
    cached = {r.passage.key: r for r in load_augment(augment_cache_path(store)).records}
    assert cached[other.key].qa and all(pair.answer in other.text for pair in cached[other.key].qa)
    with pytest.raises(ArtifactError, match="no sentence"):
        explorer.prag_adapter([tiny], encode_missing=True)


def test_reference_peft_adapter_folder_matches_our_injection(tiny, tmp_path):
    """A PRAG adapter folder written by peft imports with its alpha/r scale and gives peft's outputs."""
    from peft import LoraConfig, get_peft_model

    from engine.adapters import load_peft_dir
    from engine.inject import inject

    ids = torch.randint(3, 128, (1, 12))
    with torch.no_grad():
        base = tiny(input_ids=ids).logits
    peft_model = get_peft_model(tiny, LoraConfig(r=2, lora_alpha=32, lora_dropout=0.0,
                                                 target_modules=["gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
        expected = peft_model(input_ids=ids).logits
    peft_model.save_pretrained(tmp_path / "passage_0")
    adapter = load_peft_dir(tmp_path / "passage_0")
    assert adapter.scale == 16.0 and len(adapter.pairs) == 6
    plain = peft_model.unload()
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, base)
        with inject(plain, [adapter]):
            got = plain(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5) and not torch.allclose(got, base, atol=1e-3)


def test_answer_loss_equals_the_models_own_loss_on_a_padded_batch(loaded):
    """The 'facts' recipe runs the LM head on answer positions only: the same loss as the model's, padding included."""
    from engine.offline.encode import answer_loss, training_batches
    from engine.offline.facts import fact_pairs
    from engine.offline.recipes import recipe_config

    passage = fictional_record().passage
    config = recipe_config("facts")
    batch = training_batches(loaded.tokenizer, AugmentRecord(passage, passage.text, fact_pairs(passage)), config)[0]
    assert batch.input_ids.shape[0] == config.batch_size and (batch.attention_mask == 0).any()  # padded rows
    with torch.no_grad():
        ours = answer_loss(loaded.model, batch, None)
        theirs = loaded.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
    assert torch.allclose(ours, theirs, atol=1e-5), (float(ours), float(theirs))
    # One row: every token before the answer is "shared", yet the answer's first token must still be scored.
    single = training_batches(loaded.tokenizer, short_records(1)[0], config)[0]
    assert single.input_ids.shape[0] == 1
    with torch.no_grad():
        ours = answer_loss(loaded.model, single, None)
        theirs = loaded.model(input_ids=single.input_ids, attention_mask=single.attention_mask, labels=single.labels).loss
    assert torch.allclose(ours, theirs, atol=1e-5), (float(ours), float(theirs))


# --- several passages per step ------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["facts", "reference"])
def test_loras_trained_together_match_loras_trained_alone(loaded, recipe):
    """One forward pass for several passages' examples, each row with its own LoRA: the same losses and LoRAs."""
    from dataclasses import replace

    from engine.offline.encode import train_loras, training_batches
    from engine.offline.recipes import recipe_config

    config = replace(recipe_config(recipe), epochs=2)
    records = short_records(3)
    records[0] = AugmentRecord(records[0].passage, records[0].rewrite,  # a passage with more steps than the others
                               records[0].qa + [QAPair("Who founded Velmora?", "salt traders", "Salt traders did.")] * 4)
    batches = [training_batches(loaded.tokenizer, r, config) for r in records]
    assert len({len(b) for b in batches}) > 1, "the passages must have different numbers of steps"
    init = initial_pairs(loaded.arch, config)
    alone = [train_lora(loaded, b, config, init=init) for b in batches]
    together = train_loras(loaded, batches, config, init=init)
    for solo, joint in zip(alone, together, strict=True):
        assert len(solo.losses) == len(joint.losses)
        torch.testing.assert_close(torch.tensor(joint.losses), torch.tensor(solo.losses), atol=1e-4, rtol=1e-4)
        for key, (a, b) in solo.adapter.pairs.items():
            ja, jb = joint.adapter.pairs[key]
            # The weight deltas B @ A agree; single entries may not (Adam divides tiny gradients by tiny norms).
            assert float((jb @ ja - b @ a).norm()) <= 0.05 * float((b @ a).norm()) + 1e-7, key
    assert (together[0].adapter.pairs[next(iter(init))][1] - together[1].adapter.pairs[next(iter(init))][1]).abs().max() > 1e-4


def test_encode_cli_takes_passages_per_step(loaded, tmp_path):
    out = tmp_path / "aug.json"
    save_augment(out, AugmentFile("handmade", short_records(2)))
    env = {**os.environ, "PRAG_HOME": str(tmp_path / "home")}
    bad = subprocess.run([sys.executable, "-m", "engine.cli.app", "encode", "-a", str(out), "--passages-per-step", "0"],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert bad.returncode == 2 and "--passages-per-step" in bad.stderr and "Traceback" not in bad.stderr
    done = subprocess.run([sys.executable, "-m", "engine.cli.app", "encode", "-a", str(out), "--passages-per-step", "2",
                           "--recipe", "reference", "--epochs", "1", "--store", str(tmp_path / "loras")],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "encoded 2 LoRAs" in done.stdout
    assert len(list((tmp_path / "loras").rglob("*.safetensors"))) == 2


def test_loras_from_gold_pairs_never_reach_the_explorer(loaded, tmp_path):
    """Gold QA pairs hold the test questions: their LoRAs get a folder of their own that eval and ask do not read."""
    from engine.store import qa_source_of

    records = short_records(1)
    aug = tmp_path / "gold.json"
    save_augment(aug, AugmentFile("gold", records, info={"qa_source": "gold QA pairs from x.jsonl"}))
    assert qa_source_of("gold") == qa_source_of("anything", {"qa_source": "gold QA pairs from x"}) == "gold"
    assert qa_source_of("cloze", {"qa_source": "cloze: blanked spans"}) == ""
    env = {**os.environ, "PRAG_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "engine.cli.app", "encode", "-a", str(aug), "--recipe", "reference",
                           "--store", str(tmp_path / "loras")], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    config = EncodeConfig()
    gold_store = LoraStore(tmp_path / "loras", loaded.model_id, config, qa_source="gold")
    assert gold_store.has(records[0].passage) and gold_store.dir.name.endswith("-gold")
    assert not LoraStore(tmp_path / "loras", loaded.model_id, config).has(records[0].passage)
