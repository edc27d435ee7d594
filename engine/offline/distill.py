"""DyPRAG by distillation: fit the parameter translator without any stored PRAG LoRA.

For each (passage, QA pair) the student is the model carrying the LoRA the translator makes
from the passage's hidden state, asked the question alone; the teacher is the same model with
no LoRA, reading the passage in its prompt. Loss per batch, over the answer's tokens:

    LM(student, question only)                                  the answer itself
    + kl_weight      * KL(teacher || student)                   what reading the passage does to every next-token distribution
    + combine_weight * LM(student with the passage in its prompt)  DyPRAG-combine: the LoRA must help, not hurt, a reader
    + locality_weight * KL(bare model || model with another passage's LoRA)  a LoRA must leave questions it cannot answer alone

No PRAG LoRA is needed, so the training set is as large as the augmentation (cloze or facts QA
pairs are instant). Resumable like `engine.offline.train`: a seeded order per epoch, and a
checkpoint of the translator, the optimizer and the position, so a killed run that is started
again ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.atomic import file_digest
from engine.corpus import Passage
from engine.device import model_device
from engine.errors import InputError
from engine.inject import inject
from engine.models import LoadedModel
from engine.offline.records import AugmentRecord
from engine.offline.train import (
    FitConfig,
    FitLoop,
    TrainState,
    TrainSummary,
    cached_embeddings,
    checked_out_path,
    checkpoint_path,
    loss_history,
    resume,
    write_translator,
)
from engine.progress import ProgressCallback, report
from engine.prompts import generation_prompt
from engine.validate import not_negative, positive

if TYPE_CHECKING:
    import torch

    from engine.adapters import Adapter
    from engine.translator import ParameterTranslator

DISTILL_TERMS = ("lm", "kl", "combine", "hidden", "locality", "total")
DRAWS = ("first", "random")
LATER_DEFAULTS = {("hidden_weight", 0.0), ("draw", "first"), ("locality_weight", 0.0)}
"""Settings added after translators were trained: at these values they change nothing, so checkpoints still resume."""
MAX_PROMPT_TOKENS = 384
"""Teacher prompts longer than this (a long passage) keep their first tokens of passage text only."""


def check_locality(weight: float, batch_size: int) -> None:
    """The locality term pairs each row with another passage's LoRA: a batch of one has none."""
    if weight and batch_size < 2:
        raise InputError("--locality-weight needs another passage's LoRA in the same batch", "pass --batch-size 2 or more")


@dataclass(frozen=True)
class DistillConfig(FitConfig):
    """How the translator is distilled; the LoRA shape defaults to the `facts` encode recipe's."""

    learning_rate: float = 1e-3
    rank: int = 8
    first_layer: int = 15
    batch_size: int = 4
    """Examples per optimizer step, each row with its own passage's generated LoRA."""
    per_passage: int = 4
    """QA pairs used per passage (0: all)."""
    kl_weight: float = 1.0
    combine_weight: float = 0.0
    hidden_weight: float = 0.0
    """Weight of matching the teacher's last hidden states at the answer positions (relative MSE)."""
    locality_weight: float = 0.0
    """Weight of KL(bare model || model carrying the LoRA of another passage of the batch), question only: a LoRA
    that rewrites every answer (the style of the passages, not their facts) pays for it on questions it has no fact for."""
    draw: str = "first"
    """Which `per_passage` pairs of a passage: its "first" (its opening sentence's) or drawn at "random" (seeded)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self.rank, "rank")
        positive(self.batch_size, "batch size")
        if self.draw not in DRAWS:
            raise InputError(f"unknown draw {self.draw!r}", f"use one of: {', '.join(DRAWS)}")
        for value, what in ((self.first_layer, "first layer"), (self.per_passage, "examples per passage"),
                            (self.kl_weight, "KL weight"), (self.combine_weight, "combine weight"),
                            (self.hidden_weight, "hidden-state weight"), (self.locality_weight, "locality weight")):
            not_negative(value, what)
        check_locality(self.locality_weight, self.batch_size)


@dataclass(frozen=True)
class DistillExample:
    passage: Passage
    student: list[int]
    """Question-only prompt + answer tokens."""
    teacher: list[int]
    """Passage-in-prompt prompt + the same answer tokens."""
    answer: int
    """How many tokens at the end of both are the answer."""


def chosen_pairs(record: AugmentRecord, per_passage: int, seed: int, draw: str = "first") -> list:
    """`per_passage` of a passage's pairs: its first ones, or drawn at random (seeded by the passage), in passage order.

    The first pairs of a passage all come from its opening sentence (with facts pairs, who a person
    is): the translator then learns to answer that one question; a random draw covers the passage.
    """
    if not per_passage or per_passage >= len(record.qa):
        return list(record.qa)
    if draw == "first":
        return list(record.qa[:per_passage])
    picked = sorted(random.Random(f"{seed}:{record.passage.key}").sample(range(len(record.qa)), per_passage))
    return [record.qa[i] for i in picked]


def build_distill_examples(tokenizer, records: Sequence[AugmentRecord], per_passage: int, seed: int = 0,
                           draw: str = "first") -> list[DistillExample]:
    examples = []
    for record in records:
        pairs = chosen_pairs(record, per_passage, seed, draw)
        for pair in pairs:
            answer = tokenizer(f" {pair.answer.strip().rstrip('.')}.", add_special_tokens=False)["input_ids"]
            question = tokenizer(generation_prompt(tokenizer, pair.question), add_special_tokens=False)["input_ids"]
            reading = tokenizer(generation_prompt(tokenizer, pair.question, [record.passage]), add_special_tokens=False)["input_ids"]
            if len(reading) > MAX_PROMPT_TOKENS:
                continue  # the teacher would need a truncated passage: not the reader we distil
            examples.append(DistillExample(record.passage, question + answer, reading + answer, len(answer)))
    return examples


# --- the loss ---------------------------------------------------------------------------------------------


def _padded(rows: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, device=device)
        mask[i, :len(row)] = 1
    return ids, mask


def answer_states(model, rows: Sequence[list[int]], answers: Sequence[int], adapters, pad_id: int) -> torch.Tensor:
    """Last hidden states that predict each row's answer tokens, concatenated: (sum of answer lengths, hidden)."""
    import torch

    ids, mask = _padded(rows, pad_id, model_device(model))
    body = getattr(model, model.base_model_prefix)
    with inject(model, adapters):
        hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
    return torch.cat([hidden[i, len(row) - n - 1:len(row) - 1] for i, (row, n) in enumerate(zip(rows, answers, strict=True))])


def answer_logits(model, rows: Sequence[list[int]], answers: Sequence[int], adapters, pad_id: int) -> torch.Tensor:
    """Logits predicting each row's answer tokens, concatenated: (sum of answer lengths, vocab). Right padding."""
    return model.get_output_embeddings()(answer_states(model, rows, answers, adapters, pad_id)).float()


def distill_loss(loaded: LoadedModel, translator: ParameterTranslator, embeddings: torch.Tensor,
                 batch: Sequence[DistillExample], config: DistillConfig) -> dict[str, torch.Tensor]:
    """The three terms and their weighted total for one batch; gradients reach the translator only."""
    import torch
    import torch.nn.functional as F

    model, tokenizer = loaded.model, loaded.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    answers = [e.answer for e in batch]
    targets = torch.tensor([t for e in batch for t in e.student[-e.answer:]], device=embeddings.device)
    head = model.get_output_embeddings()
    with torch.no_grad():
        teacher_states = answer_states(model, [e.teacher for e in batch], answers, [None] * len(batch), pad_id)
        teacher = head(teacher_states).float()
    generated = translator.adapters(embeddings)
    with torch.enable_grad():
        student_states = answer_states(model, [e.student for e in batch], answers, generated, pad_id)
        student = head(student_states).float()
        log_student = F.log_softmax(student, -1)
        lm = F.nll_loss(log_student, targets)
        kl = F.kl_div(log_student, F.log_softmax(teacher, -1), log_target=True, reduction="batchmean")
        combine = torch.zeros((), device=embeddings.device)
        if config.combine_weight:
            reader = answer_logits(model, [e.teacher for e in batch], answers, generated, pad_id)
            combine = F.cross_entropy(reader, targets)
        hidden = torch.zeros((), device=embeddings.device)
        if config.hidden_weight:  # relative, so the weight means the same on any model width
            hidden = (student_states.float() - teacher_states.float()).pow(2).mean() / teacher_states.float().pow(2).mean()
        locality = torch.zeros((), device=embeddings.device)
        if config.locality_weight:
            locality = locality_kl(model, batch, generated, pad_id)
        total = (lm + config.kl_weight * kl + config.combine_weight * combine + config.hidden_weight * hidden
                 + config.locality_weight * locality)
    return {"lm": lm, "kl": kl, "combine": combine, "hidden": hidden, "locality": locality, "total": total}


def other_passage_rows(batch: Sequence[DistillExample]) -> list[tuple[int, int]]:
    """(row, donor) pairs: each row with the next row of the batch (cyclically) whose passage is another one.
    Rows whose passage is the whole batch's have no donor and are left out."""
    keys = [e.passage.key for e in batch]
    pairs = []
    for row, key in enumerate(keys):
        donor = next(((row + k) % len(keys) for k in range(1, len(keys)) if keys[(row + k) % len(keys)] != key), None)
        if donor is not None:
            pairs.append((row, donor))
    return pairs


def locality_kl(model, batch: Sequence[DistillExample], generated: Sequence[Adapter], pad_id: int) -> torch.Tensor:
    """KL(bare model || model with a mismatched LoRA) over the answer tokens of question-only prompts: zero when
    a LoRA leaves questions about other passages as the model without it answers them."""
    import torch
    import torch.nn.functional as F

    pairs = other_passage_rows(batch)
    if not pairs:
        return torch.zeros((), device=model_device(model))
    rows = [batch[row].student for row, _ in pairs]
    answers = [batch[row].answer for row, _ in pairs]
    with torch.no_grad():
        bare = answer_logits(model, rows, answers, [None] * len(pairs), pad_id)
    mismatched = answer_logits(model, rows, answers, [generated[donor] for _, donor in pairs], pad_id)
    return F.kl_div(F.log_softmax(mismatched, -1), F.log_softmax(bare, -1), log_target=True, reduction="batchmean")


# --- the stage ------------------------------------------------------------------------------------------------


def make_distill_translator(loaded: LoadedModel, config: DistillConfig, embeddings: torch.Tensor) -> ParameterTranslator:
    """A translator whose LoRAs start at zero but can learn at once: A's hypernetwork is scaled to the
    embeddings (unit pre-activations, Kaiming-sized A), B's output layer is zero, as a LoRA's B is.
    (The reference's near-zero init only learns because its MSE term pulls it toward stored LoRAs.)"""
    import torch

    from engine.translator import ParameterTranslator, TranslatorConfig

    translator = ParameterTranslator(TranslatorConfig(loaded.arch, rank=config.rank, p=config.p, first_layer=config.first_layer))
    gen = torch.Generator().manual_seed(config.seed)
    rms = float(embeddings.float().pow(2).mean().sqrt()) or 1.0
    width = loaded.arch.hidden_size + 1
    with torch.no_grad():
        for name, weight in translator.weights.items():
            module, part = name.split("__")
            fan_in = loaded.arch.module_shape(module)[0]
            if part.startswith("pre_"):
                weight.copy_(torch.randn(weight.shape, generator=gen) / (math.sqrt(width) * rms))
            elif part == "post_A":
                weight.copy_(torch.randn(weight.shape, generator=gen) / math.sqrt(fan_in * config.p))
            else:
                weight.zero_()
    return translator


def warm_start(translator: ParameterTranslator, init: Path, loaded: LoadedModel, config: DistillConfig) -> dict[str, Any]:
    """Copy a trained translator's weights into `translator` (same rank, p and first layer): training goes on
    from it on other passages. Returns what the sidecar says about where it started."""
    from engine.translator import load_translator

    start = load_translator(init, loaded.arch)
    have = (start.config.rank, start.config.p, start.config.first_layer)
    want = (config.rank, config.p, config.first_layer)
    if have != want:
        raise InputError(f"--init translator {init} has rank {have[0]}, p {have[1]}, first layer {have[2]}; this run asks for "
                         f"rank {want[0]}, p {want[1]}, first layer {want[2]}",
                         f"pass --rank {have[0]} --p {have[1]} --first-layer {have[2]} to go on training it")
    translator.weights.load_state_dict(start.weights.state_dict())
    before = (start.sidecar or {}).get("training", {})
    return {"path": str(Path(init).expanduser().resolve()), "digest": file_digest(Path(init).expanduser()),
            **{k: before[k] for k in ("command", "passages", "examples_seen", "steps") if k in before}}


def fingerprint(loaded: LoadedModel, config: DistillConfig, examples: Sequence[DistillExample], init_digest: str | None = None) -> str:
    """What a checkpoint must agree with to be resumed (epochs and checkpoint spacing may change)."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.passage.key, example.student, example.teacher]).encode())
    blob = {"objective": "distill", "model": loaded.arch.as_dict(),
            "config": {k: v for k, v in asdict(config).items()
                       if k not in ("epochs", "checkpoint_every", "max_steps") and (k, v) not in LATER_DEFAULTS},
            "examples": digest.hexdigest(), **({"init": init_digest} if init_digest else {})}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def distill_translator(
    loaded: LoadedModel,
    records: Sequence[AugmentRecord],
    embeddings_dir: Path,
    out: Path,
    config: DistillConfig = DistillConfig(),
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    info: dict[str, Any] | None = None,
    fresh: bool = False,
    export: bool = False,
    init: Path | None = None,
) -> TrainSummary:
    """Distil (or resume distilling) a translator and write it to `out`, its sidecar saying how.

    `init`: start from that trained translator instead of a fresh one (a checkpoint of this run still wins)."""
    import torch

    out = checked_out_path(out)
    if config.first_layer >= loaded.arch.num_layers:
        raise InputError(f"first layer {config.first_layer} is past the model's {loaded.arch.num_layers} layers",
                         f"use 0 to {loaded.arch.num_layers - 1}")
    examples = build_distill_examples(loaded.tokenizer, records, config.per_passage, config.seed, config.draw)
    if not examples:
        raise InputError("the augmentation file has no QA pairs to distil from", "augment passages with `prag augment --qa-cloze`")
    device = model_device(loaded.model)
    vectors = cached_embeddings(loaded, [r.passage for r in records], embeddings_dir, progress)
    translator = make_distill_translator(loaded, config, torch.stack(list(vectors.values())))
    started_from = warm_start(translator, init, loaded, config) if init is not None else None
    print_ = fingerprint(loaded, config, examples, started_from["digest"] if started_from else None)
    translator = translator.to(device)
    translator.train()
    optimizer = torch.optim.AdamW(translator.parameters(), lr=config.learning_rate)
    state, resumed_from = resume(checkpoint_path(out), translator, optimizer, print_, fresh,
                                 TrainState(sums={t: 0.0 for t in DISTILL_TERMS}))
    for term in DISTILL_TERMS:  # a checkpoint from before the hidden-state term: it was zero all along
        state.sums.setdefault(term, 0.0)
        state.last.setdefault(term, 0.0)
    total = config.epochs * math.ceil(len(examples) / config.batch_size)
    label = "Distilling translator"
    start, cpu_start = time.perf_counter(), time.process_time()

    def show() -> None:
        done_in_epoch = max(math.ceil(state.index / config.batch_size), 1)
        means = {t: state.sums[t] / done_in_epoch for t in DISTILL_TERMS} if state.index else state.last
        weights = {"combine": config.combine_weight, "hidden": config.hidden_weight, "locality": config.locality_weight}
        text = " ".join(f"{t} {means.get(t, 0.0):.3g}" for t in DISTILL_TERMS if t != "total" and weights.get(t, 1.0))
        report(progress, label, state.step, total, text)

    def step(positions: list[int]) -> dict[str, torch.Tensor]:
        batch = [examples[i] for i in positions]
        embeddings = torch.stack([vectors[e.passage.key] for e in batch]).to(device)
        return distill_loss(loaded, translator, embeddings, batch, config)

    loop = FitLoop.of(translator, optimizer, out, print_, DISTILL_TERMS, config)
    new_steps = loop.run(state, len(examples), config.batch_size, step, show, cancel)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    history = loss_history(state, DISTILL_TERMS, config.batch_size)
    final = {t: history[-1][t] for t in DISTILL_TERMS} if history else {}
    passages = len({e.passage.key for e in examples})
    sidecar = {
        "training": {
            **(info or {}),
            "objective": "distill",
            "passages": passages,
            **({"init": started_from, "passages_with_init": passages + int(started_from.get("passages", 0))}
               if started_from else {}),
            "examples": len(examples),
            "steps": state.step,
            "examples_seen": state.epoch * len(examples) + state.index,
            "seconds_per_step": state.seconds_per_step,
            "timed_steps": state.timed_steps,
            "config": {k: v for k, v in asdict(config).items() if k not in ("checkpoint_every", "max_steps")},
            "loss": (f"LM(student, question only) + {config.kl_weight:g} * KL(teacher reading the passage || student)"
                     + (f" + {config.combine_weight:g} * LM(student reading the passage)" if config.combine_weight else "")
                     + (f" + {config.hidden_weight:g} * relative MSE(student's last hidden states, teacher's)"
                        if config.hidden_weight else "")
                     + (f" + {config.locality_weight:g} * KL(bare model || student carrying another passage's LoRA)"
                        if config.locality_weight else "")),
        },
        "final_losses": final,
        "loss_history": history,
    }
    reference = write_translator(translator, out, sidecar, export)
    return TrainSummary(out, state.step, new_steps, seconds, cpu_seconds, resumed_from, final, reference)
