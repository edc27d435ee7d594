"""PRAG stage 2: train one LoRA per passage and keep it in the content-addressed store.

The recipe is the reference one (rank 2, alpha 32, gate/up/down of every layer, AdamW
lr 3e-4, batch 1, loss on every token). Per passage with n QA pairs, the first
ceil(n/2) pairs give two examples each (passage in the prompt, rewrite in the prompt)
and the others one example with the question alone; every example ends with
"The answer is X." exactly as inference prompts are continued.

The LoRA is our own `Adapter` whose A and B are `nn.Parameter`s, injected through
forward hooks (`engine.inject`), so the model's weights are never touched and peft
is not needed. Every passage starts from the same initial A (Kaiming-uniform, seeded)
and B = 0, as the reference starts every passage from one saved base adapter: the
result depends only on (model, passage, augmentation, recipe), never on the order or
the shard a passage was encoded in, and a translator can learn to predict it.

`OnDemandEncoder` does the same for an `Explorer` (`prag eval`, `prag ask --encode`,
the TUI): passages without a LoRA get cloze QA pairs from their own sentences (cached
beside the store) and are encoded with progress reports and cancellation.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.adapters import Adapter, Key
from engine.corpus import Passage, make_passage
from engine.device import model_device
from engine.errors import ArtifactError, InputError
from engine.inject import inject
from engine.models import MLP_MODULES, LoadedModel, ModelArch
from engine.offline.frozen import FrozenBelow
from engine.offline.records import AugmentFile, AugmentFn, AugmentRecord, FailedPassage, QAPair, load_augment, save_augment
from engine.progress import ProgressCallback, check_cancel, report
from engine.prompts import generation_prompt, shared_prefix, training_text
from engine.store import QA_VERSIONS, EncodeConfig, LoraStore
from engine.validate import positive

if TYPE_CHECKING:
    import torch

RECIPE = "prag-explorer/encode-1"
MAX_TOKENS = 2048
"""Longer training examples are cut (the reference cuts at 3000)."""

StepCallback = Callable[[int, int, float], None]
"""(step done, steps in all, loss of that step)."""


# --- training examples ----------------------------------------------------------------------------


def training_texts(tokenizer, record: AugmentRecord) -> list[str]:
    """The reference layout: ceil(n/2) QA pairs with passage and with rewrite, the rest question-only."""
    with_context = (len(record.qa) + 1) // 2
    texts = []
    for index, pair in enumerate(record.qa):
        if index < with_context:
            for context in (record.passage.text, record.rewrite):
                texts.append(training_text(tokenizer, pair.question, pair.answer, [make_passage(context, record.passage.title)]))
        else:
            texts.append(training_text(tokenizer, pair.question, pair.answer))
    return texts


def tokenize(tokenizer, texts: Sequence[str]) -> list[torch.Tensor]:
    """(1, T) id tensors; the chat template already holds the special tokens."""
    return [tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :MAX_TOKENS] for text in texts]


@dataclass(frozen=True)
class Batch:
    """Examples of one optimizer step: right-padded ids, labels (-100 = no loss) and the padding mask."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor | None = None

    @classmethod
    def of(cls, item: Batch | torch.Tensor, device: torch.device | None = None) -> Batch:
        """A bare (1, T) id tensor is the reference's example: loss on every token. On `device` when given."""
        batch = item if isinstance(item, Batch) else cls(item, item)
        if device is None or batch.input_ids.device == device:
            return batch
        mask = batch.attention_mask.to(device) if batch.attention_mask is not None else None
        return Batch(batch.input_ids.to(device), batch.labels.to(device), mask)


def question_examples(tokenizer, record: AugmentRecord, loss_on: str) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) per QA pair, the question alone in the prompt: exactly what PRAG is later asked.

    Prompt and answer are tokenized apart, so the answer's tokens are the ones a probe scores.
    """
    examples = []
    for pair in record.qa:
        prompt = tokenizer(generation_prompt(tokenizer, pair.question), add_special_tokens=False)["input_ids"]
        answer = tokenizer(f" {pair.answer.strip().rstrip('.')}.", add_special_tokens=False)["input_ids"]
        ids = (prompt + answer)[:MAX_TOKENS]
        labels = ([-100] * len(prompt) + answer if loss_on == "answer" else prompt + answer)[:MAX_TOKENS]
        examples.append((ids, labels))
    return examples


def pad_batches(examples: Sequence[tuple[list[int], list[int]]], batch_size: int, pad_id: int) -> list[Batch]:
    import torch

    batches = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (example_ids, example_labels) in enumerate(chunk):
            ids[row, : len(example_ids)] = torch.tensor(example_ids)
            labels[row, : len(example_labels)] = torch.tensor(example_labels)
            mask[row, : len(example_ids)] = 1
        batches.append(Batch(ids, labels, mask))
    return batches


def training_batches(tokenizer, record: AugmentRecord, config: EncodeConfig) -> list[Batch | torch.Tensor]:
    """The steps of one epoch for `record` under `config`'s layout."""
    if config.layout == "reference":
        return list(tokenize(tokenizer, training_texts(tokenizer, record)))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    record = replace(record, qa=trained_pairs(record, config))
    return list(pad_batches(question_examples(tokenizer, record, config.loss_on), config.batch_size, pad_id))


def trained_pairs(record: AugmentRecord, config: EncodeConfig) -> list[QAPair]:
    """The QA pairs a recipe trains on: all of them, or `max_qa` spread over a long passage."""
    if config.layout != "reference" and config.max_qa and len(record.qa) > config.max_qa:
        return spread(record.qa, config.max_qa)
    return list(record.qa)


def recipe_pairs(passage: Passage, config: EncodeConfig) -> tuple[list[QAPair], int]:
    """(the pairs `config` trains an on-demand LoRA of `passage` on, how many the passage gave):
    what that LoRA can know. Pure text work, no model: the TUI and `prag eval --coverage` show it."""
    outcome = on_demand_source(config.qa)(passage, None)
    if isinstance(outcome, FailedPassage):
        return [], 0
    return trained_pairs(outcome, config), len(outcome.qa)


def spread(items: Sequence, count: int) -> list:
    """`count` of `items`, evenly spaced from first to last (a passage's pairs come in sentence order)."""
    if count >= len(items):
        return list(items)
    return [items[round(i * (len(items) - 1) / max(count - 1, 1))] for i in range(count)]


# --- the LoRA -------------------------------------------------------------------------------------


def initial_pairs(arch: ModelArch, config: EncodeConfig) -> dict[Key, tuple[torch.Tensor, torch.Tensor]]:
    """A Kaiming-uniform (as peft and the LoRA paper's code), B zeros: the adapter starts as a no-op."""
    import torch

    gen = torch.Generator().manual_seed(config.seed)
    pairs = {}
    for layer in range(config.first_layer(arch.num_layers), arch.num_layers):
        for module in MLP_MODULES:
            fan_in, fan_out = arch.module_shape(module)
            a = torch.empty(config.rank, fan_in)
            torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=gen)
            pairs[(layer, module)] = (a, torch.zeros(fan_out, config.rank))
    return pairs


@dataclass
class TrainedLora:
    adapter: Adapter
    losses: list[float] = field(default_factory=list)
    """Loss of every optimizer step, in order."""


def answer_loss(model, batch: Batch, adapter: Adapter | None) -> torch.Tensor:
    """Mean next-token loss over the labelled positions, computed the cheap way; same value as the model's own loss.

    One passage's case of `joint_loss`: the shared prefix (template and system prompt) runs once and
    the LM head runs on the labelled positions only.
    """
    return joint_loss(model, [batch], [adapter])[0]


def lm_losses(loaded: LoadedModel, ids: Sequence[Batch | torch.Tensor], adapter: Adapter | None) -> list[float]:
    """Per-batch LM loss with `adapter` injected, no training (tests and reports)."""
    import torch

    losses = []
    for item in ids:
        batch = Batch.of(item, model_device(loaded.model))
        with inject(loaded.model, [adapter] * batch.input_ids.shape[0]), torch.no_grad():
            losses.append(float(loaded.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss))
    return losses


def train_lora(
    loaded: LoadedModel,
    ids: Sequence[Batch | torch.Tensor],
    config: EncodeConfig,
    cancel: threading.Event | None = None,
    on_step: StepCallback | None = None,
    init: dict[Key, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> TrainedLora:
    """Fit one LoRA on the batches, `config.epochs` passes in a fixed order."""
    import torch

    device = model_device(loaded.model)
    adapter, optimizer = _trainable(init if init is not None else initial_pairs(loaded.arch, config), config, device)
    model = loaded.model
    total = len(ids) * config.epochs
    losses: list[float] = []
    frozen = FrozenBelow(model, _first_adapted(adapter))
    with torch.enable_grad():
        for _epoch in range(config.epochs):
            for k, item in enumerate(ids):
                check_cancel(cancel)
                batch = Batch.of(item, device)
                # Hooks are re-entered each step: they hold the stacked A/B, which must see the update.
                with frozen.step(k):
                    loss = answer_loss(model, batch, adapter) if config.loss_on == "answer" else _full_loss(model, batch, adapter)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                if on_step is not None:
                    on_step(len(losses), total, losses[-1])
    return TrainedLora(_stored(adapter, config), losses)


# --- several passages per step ---------------------------------------------------------------------


def joint_loss(model, batches: Sequence[Batch], adapters: Sequence[Adapter | None]) -> torch.Tensor:
    """Each passage's mean loss, shape (passages,), all passages' rows in one forward pass.

    Row r of passage i carries adapter i, so each LoRA's gradient from the sum of these is exactly
    the one it gets when trained alone (the passages only share the matmuls). Two savings, both
    exact: the prefix every row shares and none labels (template and system prompt, a third of a
    short question-only example) runs once per passage (its activations depend on that passage's
    LoRA), its keys and values repeated over the passage's rows; and the LM head (a fifth of a small
    model's forward pass) runs on the labelled positions only.
    """
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    from engine.generate import cache_kwarg

    device = batches[0].input_ids.device
    rows = [(i, ids, labels) for i, b in enumerate(batches) for ids, labels in zip(b.input_ids, b.labels, strict=True)]
    lengths = [int(b.attention_mask[r].sum()) if b.attention_mask is not None else b.input_ids.shape[1]
               for b in batches for r in range(b.input_ids.shape[0])]
    width = max(lengths)
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    labels = torch.full((len(rows), width), -100, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for r, ((_, row_ids, row_labels), length) in enumerate(zip(rows, lengths, strict=True)):
        ids[r, :length], labels[r, :length], mask[r, :length] = row_ids[:length], row_labels[:length], 1
    owner = torch.tensor([i for i, _, _ in rows], device=device)
    row_adapters = [adapters[i] for i, _, _ in rows]
    labelled = (labels != -100).int().argmax(-1).min().item() if (labels != -100).any() else width
    # The label at position t is predicted from position t - 1, so the cached prefix stops before the first labelled token's predecessor.
    prefix = max(0, min(shared_prefix([row[:n].tolist() for row, n in zip(ids, lengths, strict=True)]), int(labelled) - 1, width - 1))
    body = getattr(model, model.base_model_prefix)
    key = cache_kwarg(body)
    cache = None
    if prefix > 0:
        cache = DynamicCache(config=model.config)
        with inject(model, list(adapters)):
            body(input_ids=ids[:1, :prefix].expand(len(adapters), -1), use_cache=True, **{key: cache})
        for layer in cache.layers:  # one prefix per passage -> one per row of that passage
            layer.keys, layer.values = layer.keys[owner], layer.values[owner]
    with inject(model, row_adapters):
        hidden = body(input_ids=ids[:, prefix:], attention_mask=mask, use_cache=cache is not None,
                      **({key: cache} if cache is not None else {})).last_hidden_state
    targets = labels[:, prefix + 1:]
    keep = targets != -100
    token_losses = F.cross_entropy(model.get_output_embeddings()(hidden[:, :-1][keep]).float(), targets[keep], reduction="none")
    token_owner = owner[:, None].expand_as(targets)[keep]
    sums = torch.zeros(len(adapters), device=device).index_add(0, token_owner, token_losses)
    counts = torch.bincount(token_owner, minlength=len(adapters)).clamp(min=1)
    return sums / counts


def train_loras(
    loaded: LoadedModel,
    passages: Sequence[Sequence[Batch | torch.Tensor]],
    config: EncodeConfig,
    cancel: threading.Event | None = None,
    on_step: StepCallback | None = None,
    init: dict[Key, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> list[TrainedLora]:
    """Fit one LoRA per passage, all of them stepping together: step k of an epoch takes batch k of
    every passage that has one. Each LoRA ends as `train_lora` would leave it (floating-point
    rounding aside); on a GPU or with short examples the joint pass is much faster."""
    import torch

    if len(passages) == 1:
        return [train_lora(loaded, passages[0], config, cancel, on_step, init)]
    device = model_device(loaded.model)
    start = init if init is not None else initial_pairs(loaded.arch, config)
    adapters, optimizers = map(list, zip(*(_trainable(start, config, device) for _ in passages), strict=True))
    batches = [[Batch.of(item, device) for item in items] for items in passages]
    steps = max(len(b) for b in batches)
    losses: list[list[float]] = [[] for _ in passages]
    total, done = steps * config.epochs, 0
    frozen = FrozenBelow(loaded.model, _first_adapted(adapters[0]))
    with torch.enable_grad():
        for _epoch in range(config.epochs):
            for k in range(steps):
                check_cancel(cancel)
                active = [i for i, b in enumerate(batches) if k < len(b)]
                with frozen.step(k):
                    per_passage = joint_loss(loaded.model, [batches[i][k] for i in active], [adapters[i] for i in active])
                for i in active:
                    optimizers[i].zero_grad(set_to_none=True)
                per_passage.sum().backward()
                for i in active:
                    optimizers[i].step()
                values = per_passage.detach().tolist()
                for i, value in zip(active, values, strict=True):
                    losses[i].append(value)
                done += 1
                if on_step is not None:
                    on_step(done, total, sum(values) / len(values))
    return [TrainedLora(_stored(adapter, config), steps) for adapter, steps in zip(adapters, losses, strict=True)]


def _trainable(start: dict[Key, tuple[torch.Tensor, torch.Tensor]], config: EncodeConfig, device) -> tuple[Adapter, torch.optim.Optimizer]:
    """A fresh LoRA to train from `start`, and its optimizer. Float32 on the model's device whatever the
    model's dtype: Adam's small updates survive, and the hooks add the delta in float32."""
    import torch

    pairs = {key: (torch.nn.Parameter(a.to(device, torch.float32, copy=True)), torch.nn.Parameter(b.to(device, torch.float32, copy=True)))
             for key, (a, b) in start.items()}
    optimizer = torch.optim.AdamW([t for ab in pairs.values() for t in ab], lr=config.learning_rate)
    return Adapter(pairs, config.scale), optimizer  # type: ignore[arg-type]


def _first_adapted(adapter: Adapter) -> int:
    """The lowest layer the LoRA touches: the layers under it can be replayed (`FrozenBelow`)."""
    return min(layer for layer, _ in adapter.pairs)


def _stored(adapter: Adapter, config: EncodeConfig) -> Adapter:
    """The trained LoRA as the store keeps it: float32 on the CPU."""
    pairs = {key: (a.detach().cpu().clone(), b.detach().cpu().clone()) for key, (a, b) in adapter.pairs.items()}
    return Adapter(pairs, config.scale, {"source": "prag"})


def _full_loss(model, batch: Batch, adapter: Adapter) -> torch.Tensor:
    with inject(model, [adapter] * batch.input_ids.shape[0]):
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss


# --- shards ---------------------------------------------------------------------------------------


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """"i/n" (0 <= i < n) -> (i, n); None -> no sharding."""
    if spec is None or spec == "":
        return None
    try:
        left, right = spec.split("/")
        index, count = int(left), int(right)
    except ValueError:
        raise InputError(f"--shard must look like i/n, got {spec!r}", "e.g. --shard 0/4 for the first of four shards") from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {spec}: need 0 <= i < n", f"shards of {max(count, 1)} are numbered 0 to {max(count, 1) - 1}")
    return index, count


def in_shard(passage: Passage, shard: tuple[int, int] | None) -> bool:
    """Deterministic by content hash, so every machine agrees without talking to the others."""
    return shard is None or int(passage.key, 16) % shard[1] == shard[0]


# --- the stage ------------------------------------------------------------------------------------


@dataclass
class EncodeSummary:
    total: int
    """Passages in this shard."""
    skipped: int = 0
    """Already in the store."""
    encoded: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """Process CPU time (all threads): on a busy machine a steadier measure than wall time."""
    steps: int = 0

    @property
    def seconds_per_passage(self) -> float:
        return self.seconds / self.encoded if self.encoded else 0.0

    @property
    def cpu_seconds_per_passage(self) -> float:
        return self.cpu_seconds / self.encoded if self.encoded else 0.0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps if self.steps else 0.0


def _remove_stale_temps(store: LoraStore, records: Sequence[AugmentRecord]) -> None:
    """Temp files a killed writer left for the passages about to be encoded.

    Only those: another shard's worker may be writing its own passages into the same folder.
    """
    for record in records:
        for tmp in store.dir.glob(f".{store.path_for(record.passage).name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def auto_passages_per_step(device: str, config: EncodeConfig) -> int:
    """How many passages' LoRAs to train together when the user does not say.

    Measured on 2 CPU cores, 135M model: the facts recipe's short question-only batches train 1.12x
    faster 4 at a time and 1.16x 8 at a time; the reference recipe's long passage-in-prompt examples
    gain nothing (0.95x for 4). An accelerator runs many rows for the price of one.
    """
    if device != "cpu":
        return 16
    return 8 if config.layout == "question" else 1


def encode_records(
    loaded: LoadedModel,
    records: Sequence[AugmentRecord],
    store: LoraStore,
    aug_model: str = "",
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    shard: tuple[int, int] | None = None,
    label: str = "Encoding PRAG LoRAs",
    passages_per_step: int = 1,
) -> EncodeSummary:
    """Train and store the LoRA of every record not in the store yet (one shard of them).

    `passages_per_step` LoRAs train together, their examples in one forward pass (`train_loras`);
    each group is stored as soon as it is done, so a killed run loses at most one group.
    """
    positive(passages_per_step, "passages per step")
    chosen = [r for r in records if in_shard(r.passage, shard)]
    todo = [r for r in chosen if not store.has(r.passage)]
    _remove_stale_temps(store, todo)
    summary = EncodeSummary(len(chosen), skipped=len(chosen) - len(todo))
    report(progress, label, summary.skipped, summary.total)
    init = initial_pairs(loaded.arch, store.config)
    for record in todo:
        if not record.qa:
            name = (record.passage.title or record.passage.text)[:40]
            raise ArtifactError(f"passage {name!r} has no QA pairs", "augment it again with `prag augment`")
    start, cpu_start = time.perf_counter(), time.process_time()
    for first in range(0, len(todo), passages_per_step):
        group = todo[first:first + passages_per_step]
        check_cancel(cancel)
        done = summary.skipped + summary.encoded

        def on_step(step: int, steps: int, loss: float, done: int = done) -> None:
            report(progress, label, done, summary.total, f"step {step}/{steps} loss {loss:.3f}")

        batches = [training_batches(loaded.tokenizer, record, store.config) for record in group]
        trained = train_loras(loaded, batches, store.config, cancel, on_step, init)
        for record, ids, lora in zip(group, batches, trained, strict=True):
            store.put(record.passage, lora.adapter, {
                # Examples, not optimizer steps: with the question layout a batch holds several.
                "recipe": RECIPE, "aug_model": aug_model, "examples": sum(Batch.of(item).input_ids.shape[0] for item in ids),
                "loss_first": round(lora.losses[0], 6), "loss_last": round(lora.losses[-1], 6),
            })
            summary.encoded += 1
            summary.steps += len(lora.losses)
        summary.seconds, summary.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        report(progress, label, summary.skipped + summary.encoded, summary.total, f"{summary.seconds_per_passage:.1f} s/passage")
    summary.seconds, summary.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return summary


# --- on-demand encoding for `prag ask --encode` and the TUI -----------------------------------------


def augment_cache_path(store: LoraStore) -> Path:
    """Augmentations made on demand, next to the model's LoRA folders (reused by every recipe with the same QA source)."""
    qa = store.config.qa
    version = f"-v{QA_VERSIONS[qa]}" if qa in QA_VERSIONS else ""
    name = "augment-on-demand.json" if qa == "cloze" else f"augment-on-demand-{qa}{version}.json"
    return store.dir.parent / name


def on_demand_source(qa: str) -> AugmentFn:
    """The QA pairs a recipe makes for a passage nobody augmented: instant, no LLM, no gold answers."""
    from engine.offline.cloze import cloze_source
    from engine.offline.facts import facts_source

    if qa == "facts":
        return facts_source(min_qa=1)
    return cloze_source(min_qa=1, max_qa=3)


class OnDemandEncoder:
    """The Explorer's `PassageEncoder`: augment missing passages (the recipe's QA source), then encode them into `store`.

    Augmentation is made from the passage's own sentences (instant, cached beside the store),
    not by the LLM: a 135M model takes about a minute per passage and fails on most, and gold
    pairs would train the LoRA on the very question being evaluated. The caller holds the
    model lock: training runs the same model a generation hooks.
    """

    label = "Encoding PRAG LoRAs"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def augmentation(self, passage: Passage, store: LoraStore, cancel: threading.Event | None = None) -> tuple[AugmentRecord, str]:
        """(record, its source name): the cached augmentation for `store`'s recipe, else new pairs (cached)."""
        from engine.offline.cloze import MIN_WORDS

        path = augment_cache_path(store)
        source = store.config.qa
        cached = load_augment(path) if path.is_file() else AugmentFile(source)
        for record in cached.records:
            if record.passage.key == passage.key:
                return record, cached.aug_model
        outcome = on_demand_source(source)(passage, cancel)
        if isinstance(outcome, FailedPassage):
            raise ArtifactError(
                f"passage {(passage.title or passage.text)[:40]!r} has no sentence of {MIN_WORDS}+ words to ask about",
                "augment it with `prag augment` (LLM or --qa-from-data) and `prag encode` it",
            )
        cached = load_augment(path) if path.is_file() else cached  # re-read: another worker may have written
        cached.records.append(outcome)
        save_augment(path, cached)
        return outcome, source

    def __call__(self, passages: Sequence[Passage], store: LoraStore, progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> None:
        """All missing passages' LoRAs trained together (`train_loras`), after their QA pairs are made."""
        missing = list({p.key: p for p in passages if not store.has(p)}.values())
        if not missing:
            return
        report(progress, self.label, 0, len(missing), f"encoding {(missing[0].title or missing[0].text)[:24]}")
        made = [self.augmentation(passage, store, cancel) for passage in missing]
        per_step = max(1, min(len(made), auto_passages_per_step(self.loaded.placement.device, store.config)))
        for source in dict.fromkeys(name for _, name in made):  # one call per QA source (the store records it)
            records = [record for record, name in made if name == source]
            encode_records(self.loaded, records, store, source, cancel=cancel, label=self.label, passages_per_step=per_step,
                           progress=lambda p: report(progress, self.label, p.done, len(missing), p.info))
        report(progress, self.label, len(missing), len(missing))
