"""DyPRAG stage 2: fit the parameter translator on (passage, PRAG LoRA, QA example) triples.

Loss per example, as in the reference:

    LM loss of the model carrying the generated LoRA (unscaled, as DyPRAG applies it)
    + 0.01 * KL(generated logits || PRAG-LoRA logits), batchmean
    + 100  * sum over (layer, module) of MSE(generated A, PRAG A) + MSE(generated B, PRAG B)

Batch 1, AdamW. Passage embeddings are computed once, one passage at a time (no
padding, as the reference), and cached on disk. The data order is a seeded
permutation per epoch, so a checkpoint only needs the translator, the optimizer
state and the position (epoch, index) to resume bit-for-bit: a run killed at any
point and resumed ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.adapters import Adapter
from engine.corpus import Passage
from engine.device import model_device
from engine.errors import ArtifactError, Cancelled, InputError
from engine.inject import inject
from engine.models import LoadedModel
from engine.offline.encode import tokenize, training_texts
from engine.offline.records import AugmentRecord
from engine.progress import ProgressCallback, report
from engine.store import LoraStore
from engine.validate import not_negative, positive

if TYPE_CHECKING:
    import torch

    from engine.translator import ParameterTranslator

CHECKPOINT_FORMAT = "prag-explorer-train-checkpoint/1"
TERMS = ("lm", "kl", "mse", "total")


@dataclass(frozen=True)
class FitConfig:
    """What every translator objective's loop (`FitLoop`) takes."""

    p: int = 2
    """Hypernetwork width (the paper's p)."""
    epochs: int = 1
    learning_rate: float = 1e-5
    seed: int = 0
    """Seeds the translator's init and each epoch's data order."""
    checkpoint_every: int = 50
    """Steps between checkpoints (0: only at epoch ends)."""
    max_steps: int = 0
    """Stop after this many steps in all, mid-epoch if need be, and write the translator (0: every epoch)."""

    def __post_init__(self) -> None:
        positive(self.p, "p (the translator's hidden size)")
        positive(self.epochs, "epochs")
        positive(self.learning_rate, "learning rate", "e.g. 1e-5 (the reference's) or 1e-3 (distillation's)")
        not_negative(self.checkpoint_every, "checkpoint interval")
        not_negative(self.max_steps, "maximum steps")


@dataclass(frozen=True)
class TrainConfig(FitConfig):
    """How the translator is fitted to stored PRAG LoRAs (reference defaults)."""

    per_passage: int = 0
    """Training examples per passage: 0 = all of the PRAG recipe's, 1 = the reference's first one only."""
    kl_weight: float = 0.01
    mse_weight: float = 100.0

    def __post_init__(self) -> None:
        super().__post_init__()
        not_negative(self.per_passage, "examples per passage")


@dataclass(frozen=True)
class Example:
    passage: Passage
    text: str


def build_examples(tokenizer, records: Sequence[AugmentRecord], per_passage: int = 0) -> list[Example]:
    examples = []
    for record in records:
        texts = training_texts(tokenizer, record)
        examples.extend(Example(record.passage, t) for t in (texts[:per_passage] if per_passage else texts))
    return examples


def checkpoint_path(out: Path) -> Path:
    return Path(out).with_name(Path(out).stem + ".ckpt.pt")


def reference_path(out: Path) -> Path:
    return Path(out).with_suffix(".pt")


# --- passage embeddings, cached on disk ------------------------------------------------------------


def embedding_dir(store: LoraStore) -> Path:
    """Per model, beside its LoRA folders: embeddings do not depend on the encode recipe."""
    return store.dir.parent / "embeddings"


def cached_embeddings(loaded: LoadedModel, passages: Sequence[Passage], folder: Path,
                      progress: ProgressCallback | None = None) -> dict[str, torch.Tensor]:
    """passage key -> (hidden,) last-token state of the raw text; computed once, one passage at a time."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from engine.atomic import atomic_path, clean_temp_files
    from engine.translator import passage_embeddings

    unique = list({p.key: p for p in passages}.values())
    # A killed earlier run may have died mid-write; only our passages' temps: another run may share the folder.
    clean_temp_files(folder, [f"{p.key}.safetensors" for p in unique])
    result: dict[str, torch.Tensor] = {}
    label = "Embedding passages"
    for index, passage in enumerate(unique):
        path = folder / f"{passage.key}.safetensors"
        if path.is_file():
            try:
                result[passage.key] = load_file(str(path))["embedding"]
                continue
            except (SafetensorError, OSError, KeyError):
                pass  # a damaged cache entry is ours to recompute
        vector = passage_embeddings(loaded, [passage.text])[0]
        with atomic_path(path) as tmp:
            save_file({"embedding": vector.contiguous()}, str(tmp))
        result[passage.key] = vector
        report(progress, label, index + 1, len(unique))
    return result


# --- the loss ----------------------------------------------------------------------------------------


@dataclass
class LossTerms:
    lm: torch.Tensor
    kl: torch.Tensor
    """Unweighted."""
    mse: torch.Tensor
    """Unweighted sum over keys."""
    total: torch.Tensor

    def values(self) -> dict[str, float]:
        return {name: float(getattr(self, name).detach()) for name in TERMS}


def translator_loss(loaded: LoadedModel, translator: ParameterTranslator, embedding: torch.Tensor, prag: Adapter,
                    ids: torch.Tensor, config: TrainConfig) -> LossTerms:
    """The reference objective for one example; gradients reach the translator only."""
    import torch
    import torch.nn.functional as F

    model = loaded.model
    with torch.no_grad(), inject(model, [prag]):
        target = model(input_ids=ids).logits  # (1, T, vocab)
    generated = translator.adapters(embedding[None, :])[0]
    with torch.enable_grad():
        with inject(model, [generated]):
            out = model(input_ids=ids, labels=ids)
        kl = F.kl_div(F.log_softmax(out.logits, dim=-1), F.softmax(target, dim=-1), reduction="batchmean")
        mse = torch.zeros((), dtype=torch.float32, device=ids.device)
        for key, (a, b) in generated.pairs.items():
            target_a, target_b = prag.pairs[key]
            mse = mse + F.mse_loss(a, target_a.to(a.device)) + F.mse_loss(b, target_b.to(b.device))
        total = out.loss + config.kl_weight * kl + config.mse_weight * mse
    return LossTerms(out.loss, kl, mse, total)


# --- checkpoints ---------------------------------------------------------------------------------------


@dataclass
class TrainState:
    epoch: int = 0
    index: int = 0
    """Examples of `epoch` already done (in that epoch's order)."""
    step: int = 0
    sums: dict[str, float] = field(default_factory=lambda: {t: 0.0 for t in TERMS})
    """Loss sums over the current epoch so far."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Mean losses of each finished epoch."""
    last: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    """Wall time of the steps done so far, over every run that went on from a checkpoint."""
    timed_steps: int = 0
    """Steps `seconds` covers (checkpoints older than this field carry none)."""

    @property
    def seconds_per_step(self) -> float | None:
        return round(self.seconds / self.timed_steps, 3) if self.timed_steps else None


def fingerprint(loaded: LoadedModel, store: LoraStore, config: TrainConfig, examples: Sequence[Example]) -> str:
    """What a checkpoint must agree with to be resumed (epochs and checkpoint spacing may change)."""
    blob = {
        "model": loaded.arch.as_dict(),
        "encode": store.config.key(),
        "config": {k: v for k, v in asdict(config).items() if k not in ("epochs", "checkpoint_every", "max_steps")},
        "examples": [[e.passage.key, hashlib.sha256(e.text.encode()).hexdigest()[:16]] for e in examples],
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def save_checkpoint(path: Path, translator: ParameterTranslator, optimizer: torch.optim.Optimizer, state: TrainState, print_: str) -> None:
    import torch

    from engine.atomic import atomic_path

    payload = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": print_,
        "translator": {k: v.detach().cpu().clone() for k, v in translator.weights.items()},
        "optimizer": optimizer.state_dict(),
        "epoch": state.epoch, "index": state.index, "step": state.step,
        "sums": dict(state.sums), "history": list(state.history), "last": dict(state.last),
        "seconds": state.seconds, "timed_steps": state.timed_steps,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, translator: ParameterTranslator, optimizer: torch.optim.Optimizer, print_: str) -> TrainState:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise ArtifactError(f"checkpoint {path} cannot be read ({type(exc).__name__})", "delete it or pass --fresh to start over") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"{path} is not a prag-explorer training checkpoint", "delete it or pass --fresh to start over")
    if payload.get("fingerprint") != print_:
        raise ArtifactError(f"checkpoint {path} was made with other data or settings",
                            "rerun with the same --augment/--offset/--limit/--store/--p/--lr/--per-passage/--init, "
                            "or pass --fresh to start over")
    with torch.no_grad():
        for name, tensor in payload["translator"].items():
            translator.weights[name].copy_(tensor)
    optimizer.load_state_dict(payload["optimizer"])
    return TrainState(int(payload["epoch"]), int(payload["index"]), int(payload["step"]), dict(payload["sums"]),
                      list(payload["history"]), dict(payload["last"]), float(payload.get("seconds", 0.0)),
                      int(payload.get("timed_steps", 0)))


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    """The reference shuffles; ours is a permutation fixed by (seed, epoch)."""
    import torch

    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 7919 + epoch)).tolist()


# --- the loop both objectives share ---------------------------------------------------------------


def resume(ckpt: Path, translator: ParameterTranslator, optimizer: torch.optim.Optimizer, print_: str, fresh: bool,
           empty: TrainState) -> tuple[TrainState, int | None]:
    """(state to go on from, the step resumed at or None): the checkpoint's, unless there is none or `fresh`."""
    if ckpt.is_file() and not fresh:
        state = load_checkpoint(ckpt, translator, optimizer, print_)
        return state, state.step
    return empty, None


@dataclass
class FitLoop:
    """Epochs of seeded-order batches with checkpoints and cancellation: a run killed anywhere and started
    again ends with the weights of an uninterrupted one. What differs between objectives is the step."""

    translator: ParameterTranslator
    optimizer: torch.optim.Optimizer
    ckpt: Path
    print_: str
    terms: Sequence[str]
    epochs: int
    seed: int
    checkpoint_every: int
    max_steps: int = 0
    """Stop once this many steps are done in all, mid-epoch if need be (0: run every epoch)."""

    @classmethod
    def of(cls, translator: ParameterTranslator, optimizer: torch.optim.Optimizer, out: Path, print_: str, terms: Sequence[str],
           config: FitConfig) -> FitLoop:
        """The loop `config` describes, checkpointing beside `out`."""
        return cls(translator, optimizer, checkpoint_path(out), print_, terms, config.epochs, config.seed, config.checkpoint_every,
                   config.max_steps)

    def save(self, state: TrainState) -> None:
        save_checkpoint(self.ckpt, self.translator, self.optimizer, state, self.print_)

    def run(self, state: TrainState, count: int, batch: int, step: Callable[[list[int]], dict[str, torch.Tensor]],
            show: Callable[[], None], cancel: threading.Event | None) -> int:
        """Steps until `self.epochs` are done; returns how many this call took. `step(positions)` returns the loss terms."""
        steps_per_epoch = math.ceil(count / batch)
        new_steps = 0
        show()
        while state.epoch < self.epochs:
            order = epoch_order(count, self.seed, state.epoch)
            while state.index < count:
                if self.max_steps and state.step >= self.max_steps:
                    self.save(state)  # a later run with more steps goes on from here
                    return new_steps
                if cancel is not None and cancel.is_set():
                    self.save(state)
                    raise Cancelled(f"stopped after step {state.step} of {self.epochs * steps_per_epoch}; checkpoint saved to "
                                    f"{self.ckpt}", "run the same command again to resume")
                positions = order[state.index:state.index + batch]
                started = time.perf_counter()
                losses = step(positions)
                self.optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                self.optimizer.step()
                state.seconds += time.perf_counter() - started
                state.timed_steps += 1
                state.last = {t: float(losses[t].detach()) for t in self.terms}
                for t in self.terms:
                    state.sums[t] += state.last[t]
                state.index += len(positions)
                state.step += 1
                new_steps += 1
                show()
                if self.checkpoint_every and state.step % self.checkpoint_every == 0 and state.index < count:
                    self.save(state)
            state.history.append({"epoch": state.epoch + 1, **{t: state.sums[t] / steps_per_epoch for t in self.terms}})
            state.epoch, state.index, state.sums = state.epoch + 1, 0, {t: 0.0 for t in self.terms}
            self.save(state)
        return new_steps


def loss_history(state: TrainState, terms: Sequence[str], batch: int) -> list[dict[str, Any]]:
    """Mean losses of each finished epoch, plus the part of an epoch a `max_steps` stop left unfinished."""
    rows = [dict(row) for row in state.history]
    if state.index:
        done = math.ceil(state.index / batch)
        rows.append({"epoch": state.epoch + 1, "partial": f"{done} steps", **{t: state.sums[t] / done for t in terms}})
    return [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()} for row in rows]


def write_translator(translator: ParameterTranslator, out: Path, sidecar: dict[str, Any], export: bool) -> Path | None:
    """The fitted translator and its sidecar; the reference .pt beside it when `export` (its path)."""
    from engine.translator import export_reference, save_translator

    translator.eval()
    save_translator(translator, out, sidecar)
    if not export:
        return None
    export_reference(translator, reference_path(out))
    return reference_path(out)


def checked_out_path(out: Path) -> Path:
    out = Path(out).expanduser()
    if out.suffix != ".safetensors":
        raise InputError(f"the translator path {out} must end in .safetensors", "the reference .pt format is written beside it on request")
    return out


# --- the stage ------------------------------------------------------------------------------------------


@dataclass
class TrainSummary:
    out: Path
    steps: int
    """Steps done in all (including earlier runs)."""
    new_steps: int
    """Steps done by this run."""
    seconds: float
    cpu_seconds: float
    """Process CPU time of this run's steps (all threads)."""
    resumed_from: int | None
    final: dict[str, float]
    reference: Path | None = None

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.new_steps if self.new_steps else 0.0


def make_translator(loaded: LoadedModel, rank: int, config: TrainConfig) -> ParameterTranslator:
    import torch

    from engine.translator import ParameterTranslator, TranslatorConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return ParameterTranslator(TranslatorConfig(loaded.arch, rank=rank, p=config.p))


def train_translator(
    loaded: LoadedModel,
    records: Sequence[AugmentRecord],
    store: LoraStore,
    out: Path,
    config: TrainConfig = TrainConfig(),
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    info: dict[str, Any] | None = None,
    fresh: bool = False,
    export: bool = False,
) -> TrainSummary:
    """Fit (or resume fitting) the translator and write it to `out` (+ the reference .pt when `export`)."""
    import torch

    out = checked_out_path(out)
    if not records:
        raise InputError("the augmentation file has no passages", "augment some with `prag augment`")
    missing = [r for r in records if not store.has(r.passage)]
    if missing:
        raise ArtifactError(f"{len(missing)} of {len(records)} passages have no PRAG LoRA in {store.dir}",
                            "run `prag encode` with the same --augment and --store first")
    examples = build_examples(loaded.tokenizer, records, config.per_passage)
    print_ = fingerprint(loaded, store, config, examples)
    _clean_temps(out)
    embeddings = cached_embeddings(loaded, [r.passage for r in records], embedding_dir(store), progress)
    device = model_device(loaded.model)
    translator = make_translator(loaded, store.config.rank, config).to(device)  # float32 whatever the model's dtype
    translator.train()
    optimizer = torch.optim.AdamW(translator.parameters(), lr=config.learning_rate)
    state, resumed_from = resume(checkpoint_path(out), translator, optimizer, print_, fresh, TrainState())
    total = config.epochs * len(examples)
    label = "Training translator"
    ids_cache: dict[int, torch.Tensor] = {}
    start, cpu_start = time.perf_counter(), time.process_time()

    def show() -> None:
        seen = max(state.index, 1)
        means = {t: state.sums[t] / seen for t in TERMS} if state.index else state.last
        text = " ".join(f"{t} {means.get(t, 0.0):.3g}" for t in ("lm", "kl", "mse"))
        epoch = f"ep {min(state.epoch + 1, config.epochs)}/{config.epochs} " if config.epochs > 1 else ""
        report(progress, label, state.step, total, epoch + text)

    def step(positions: list[int]) -> dict[str, torch.Tensor]:
        (position,) = positions
        example = examples[position]
        if position not in ids_cache:
            ids_cache[position] = tokenize(loaded.tokenizer, [example.text])[0].to(device)
        prag = store.get(example.passage)
        if prag is None:
            raise ArtifactError(f"the PRAG LoRA of {example.passage.title or example.passage.key!r} vanished from {store.dir}",
                                "run `prag encode` again, then rerun to resume")
        terms = translator_loss(loaded, translator, embeddings[example.passage.key].to(device), prag, ids_cache[position], config)
        return {t: getattr(terms, t) for t in TERMS}

    loop = FitLoop.of(translator, optimizer, out, print_, TERMS, config)
    new_steps = loop.run(state, len(examples), 1, step, show, cancel)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    history = loss_history(state, TERMS, 1)
    final = {t: history[-1][t] for t in TERMS} if history else {}
    sidecar = {
        "training": {
            **(info or {}),
            "passages": len(records),
            "examples": len(examples),
            "steps": state.step,
            "epochs": config.epochs,
            "learning_rate": config.learning_rate,
            "per_passage": config.per_passage,
            "seed": config.seed,
            "seconds_per_step": state.seconds_per_step,
            "loss": f"lm + {config.kl_weight:g} * KL(generated || PRAG, batchmean) + {config.mse_weight:g} * sum MSE(A, B)",
            "encode_config": asdict(store.config),
        },
        "final_losses": final,
        "loss_history": history,
    }
    reference = write_translator(translator, out, sidecar, export)
    return TrainSummary(out, state.step, new_steps, seconds, cpu_seconds, resumed_from, final, reference)


def _clean_temps(out: Path) -> None:
    """Temp files a killed run left beside its outputs (only ours, by name)."""
    for name in (out.name, checkpoint_path(out).name, out.with_suffix(".json").name, reference_path(out).name):
        for tmp in out.parent.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
