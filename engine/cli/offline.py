"""`prag augment`, `prag encode`, `prag train`: the offline PRAG / DyPRAG stages.

Each is resumable: rerun the same command and finished work is skipped. Ctrl-C asks
the engine to stop after the current step (it saves what it has and exits 2 with
one line); a second Ctrl-C stops at once, losing only the unfinished step.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.cli.common import cancel_on_sigint, console, handle_errors, progress_bar, quiet_libraries, settings_from


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["prag", *sys.argv[1:]])


def _load(model: Optional[str], store: Optional[Path], progress):
    from engine.models import load_model

    settings = settings_from(model=model, store=store)
    quiet_libraries()
    return settings, load_model(settings.model, settings.models_dir, progress)


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def augment(
        out: Annotated[Path, typer.Option("--out", "-o", help="Augmentation JSON to write (or extend).")],
        corpus: Annotated[Optional[Path], typer.Option(help="Corpus JSONL or folder of .txt whose passages to augment.")] = None,
        data: Annotated[Optional[Path], typer.Option(help="QA JSONL: its passages (and with --qa-from-data its questions).")] = None,
        qa_from_data: Annotated[bool, typer.Option("--qa-from-data", help="Take gold QA pairs from --data instead of the LLM.")] = False,
        qa_cloze: Annotated[bool, typer.Option("--qa-cloze", help="Blank a name, number or ending of the passage's own sentences (no LLM, no gold answers; fast).")] = False,
        rewrite: Annotated[Optional[str], typer.Option(help="'light' (deterministic synonym swaps) or 'llm'. Default: light with --qa-from-data or --qa-cloze, else llm.")] = None,
        limit: Annotated[Optional[int], typer.Option(help="Only the first N passages.")] = None,
        questions: Annotated[Optional[int], typer.Option(help="Only the passages of the first N questions of --data (those `prag eval --limit N` reads).")] = None,
        sample: Annotated[Optional[int], typer.Option(help="A seeded random N passages spread over the whole file (file order kept).")] = None,
        seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
        aug_model: Annotated[Optional[str], typer.Option(help="Key prefix: <name>_rewrite / <name>_qa (default: the model name, or 'gold').")] = None,
        min_qa: Annotated[int, typer.Option(help="QA pairs a passage needs, else it is recorded as failed.")] = 3,
        max_qa: Annotated[int, typer.Option(help="QA pairs kept per passage (the reference keeps 3).")] = 3,
        attempts: Annotated[int, typer.Option(help="LLM tries per passage (greedy, then seeded sampling).")] = 4,
        retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try passages recorded as failed again.")] = False,
        reference_layout: Annotated[bool, typer.Option("--reference-layout", help="Write the reference tools' per-question entries wrapping each item.")] = False,
        model: Annotated[Optional[str], typer.Option(help="Local Hugging Face model directory (default: embedded SmolLM2).")] = None,
    ) -> None:
        """Write one rewrite and QA pairs per passage, in the PRAG augmentation layout (resumable)."""
        from engine.offline.augment import (LLMAugmenter, augment_passages, gold_qa_index, gold_source, llm_source, passages_from, sample_passages, slug,
                                    status_path)
        from engine.errors import InputError
        from engine.qa import load_qa

        if corpus is None and data is None:
            raise InputError("nothing to augment", "pass --corpus PATH or --data QA.jsonl")
        if qa_from_data and data is None:
            raise InputError("--qa-from-data needs --data QA.jsonl", "pass the QA file whose questions to use")
        if qa_from_data and qa_cloze:
            raise InputError("--qa-from-data and --qa-cloze both choose the QA pairs", "pass one of them")
        rewrite = rewrite or ("light" if qa_from_data or qa_cloze else "llm")
        if rewrite not in ("light", "llm"):
            raise InputError(f"--rewrite must be 'light' or 'llm', got {rewrite!r}", "choose one of the two")
        if qa_cloze and rewrite == "llm":
            raise InputError("--qa-cloze goes with the light rewrite", "leave out --rewrite llm")
        if not 1 <= min_qa <= max_qa:
            raise InputError(f"need 1 <= --min-qa <= --max-qa, got {min_qa} and {max_qa}", "e.g. --min-qa 3 --max-qa 3")
        for name, value in (("--limit", limit), ("--sample", sample), ("--questions", questions)):
            if value is not None and value < 1:
                raise InputError(f"{name} must be at least 1, got {value}", "pass a positive number")
        if sum(v is not None for v in (sample, limit, questions)) > 1:
            raise InputError("--sample, --limit and --questions all choose passages", "pass one of them")
        if questions is not None and data is None:
            raise InputError("--questions needs --data QA.jsonl", "pass the QA file whose first questions to take")
        passages = passages_from(corpus, data, questions)
        passages = sample_passages(passages, sample, seed) if sample else passages[:limit]
        with progress_bar() as progress, cancel_on_sigint() as cancel:
            augmenter = None
            if not (qa_from_data or qa_cloze) or rewrite == "llm":
                _, loaded = _load(model, None, progress)
                augmenter = LLMAugmenter(loaded, attempts=max(1, attempts), min_qa=min_qa, max_qa=max_qa)
            if qa_cloze:
                from engine.offline.cloze import cloze_source

                source = cloze_source(min_qa, max_qa)
                name = aug_model or "cloze"
                info = {"qa_source": "cloze: blanked spans of the passage's sentences", "rewrite_source": "light"}
            elif qa_from_data:
                source = gold_source(gold_qa_index(load_qa(data)), min_qa, max_qa, augmenter if rewrite == "llm" else None)
                name = aug_model or "gold"
                info = {"qa_source": f"gold QA pairs from {data}", "rewrite_source": rewrite}
            elif augmenter is not None:
                source = llm_source(augmenter, rewrite)
                name = aug_model or slug(augmenter.loaded.model_id)
                info = {"qa_source": f"LLM {augmenter.loaded.model_id}", "rewrite_source": rewrite}
            info["command"] = _command_line()
            summary = augment_passages(passages, out, name, source, info, progress, cancel, retry_failed,
                                       layout="questions" if reference_layout else None)
        fallbacks = f", {augmenter.rewrite_fallbacks} LLM rewrites replaced by the light one" if augmenter and augmenter.rewrite_fallbacks else ""
        console.print(f"augmented {summary.augmented} passages ({summary.skipped} already done, {summary.failed} failed{fallbacks}) "
                      f"in {summary.seconds:.1f}s -> {out}", soft_wrap=True)
        if summary.failed:
            console.print(f"[yellow]failed passages and reasons: {status_path(out)}[/]", soft_wrap=True)

    @app.command()
    @handle_errors
    def encode(
        augment: Annotated[Path, typer.Option("--augment", "-a", help="Augmentation JSON (ours or the reference PRAG file).")],
        store: Annotated[Optional[Path], typer.Option(help="LoRA store directory (default: $PRAG_HOME/loras).")] = None,
        epochs: Annotated[int, typer.Option(help="Epochs per passage (1 is what `prag ask` reads by default).")] = 1,
        lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (reference 3e-4).")] = 3e-4,
        shard: Annotated[Optional[str], typer.Option(help="Encode only shard i/n (0 <= i < n), chosen by passage hash.")] = None,
        ray: Annotated[bool, typer.Option("--ray", help="Spread passages over a Ray cluster (pip install 'prag-explorer[cluster]').")] = False,
        ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster to join, e.g. auto or ray://head:10001 (default: a local one).")] = None,
        workers: Annotated[int, typer.Option(help="With --ray: workers, each with its own copy of the model.")] = 2,
        aug_model: Annotated[Optional[str], typer.Option(help="Which <name>_qa to read when the file holds several.")] = None,
        limit: Annotated[Optional[int], typer.Option(help="Only the first N passages of the file.")] = None,
        model: Annotated[Optional[str], typer.Option(help="Local Hugging Face model directory (default: embedded SmolLM2).")] = None,
    ) -> None:
        """Train one PRAG LoRA per augmented passage into the store (resumable, shardable)."""
        from engine.offline.augment import load_augment
        from engine.offline.encode import encode_records, parse_shard
        from engine.errors import InputError
        from engine.store import EncodeConfig, LoraStore

        if epochs < 1 or not lr > 0:
            raise InputError(f"--epochs must be >= 1 and --lr > 0, got {epochs} and {lr}", "e.g. --epochs 1 --lr 3e-4")
        if limit is not None and limit < 1:
            raise InputError(f"--limit must be at least 1, got {limit}", "pass a positive number, or leave it out for all passages")
        chosen_shard = parse_shard(shard)
        aug = load_augment(augment, aug_model)
        records = aug.records[:limit]
        if not records:
            raise InputError(f"{augment} has no augmented passages", "run `prag augment` first")
        with progress_bar() as progress, cancel_on_sigint() as cancel:
            if ray:
                from engine.distributed import RayOptions, encode_on_ray

                settings = settings_from(model=model, store=store)
                quiet_libraries()
                summary = encode_on_ray(records, settings, EncodeConfig(epochs=epochs, learning_rate=lr), aug.aug_model,
                                        RayOptions(ray_address, workers), progress, cancel, chosen_shard)
                lora_dir = summary.store_dir
            else:
                settings, loaded = _load(model, store, progress)
                lora_store = LoraStore(settings.store_dir, loaded.model_id, EncodeConfig(epochs=epochs, learning_rate=lr))
                summary = encode_records(loaded, records, lora_store, aug.aug_model, progress, cancel, chosen_shard)
                lora_dir = lora_store.dir
        where = f" (shard {chosen_shard[0]}/{chosen_shard[1]})" if chosen_shard else ""
        timing = (f" in {summary.seconds:.1f}s: {summary.seconds_per_passage:.2f} s/passage, {summary.seconds_per_step:.2f} s/step, "
                  f"{summary.cpu_seconds_per_passage:.2f} CPU-s/passage" if summary.encoded else "")
        console.print(f"encoded {summary.encoded} LoRAs{where} ({summary.skipped} already in the store){timing} -> {lora_dir}", soft_wrap=True)

    @app.command()
    @handle_errors
    def train(
        augment: Annotated[Path, typer.Option("--augment", "-a", help="Augmentation JSON the LoRAs were encoded from.")],
        store: Annotated[Optional[Path], typer.Option(help="LoRA store directory (default: $PRAG_HOME/loras).")] = None,
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Translator .safetensors (default: $PRAG_HOME/translators/...).")] = None,
        p: Annotated[int, typer.Option("--p", help="Hypernetwork width p.")] = 2,
        epochs: Annotated[int, typer.Option(help="Passes over the training examples.")] = 1,
        lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (reference 1e-5).")] = 1e-5,
        checkpoint_every: Annotated[int, typer.Option(help="Save a checkpoint every N steps (and at each epoch end).")] = 50,
        per_passage: Annotated[int, typer.Option(help="Examples per passage: 0 = all of the PRAG recipe, 1 = the reference's first.")] = 0,
        lora_epochs: Annotated[int, typer.Option(help="--epochs the LoRAs were encoded with (finds them in the store).")] = 1,
        lora_lr: Annotated[float, typer.Option(help="--lr the LoRAs were encoded with.")] = 3e-4,
        seed: Annotated[int, typer.Option(help="Seed of the translator init and the data order.")] = 0,
        export_reference: Annotated[bool, typer.Option("--export-reference", help="Also write the DyPRAG .pt layout beside --out.")] = False,
        fresh: Annotated[bool, typer.Option("--fresh", help="Ignore an existing checkpoint and start over.")] = False,
        aug_model: Annotated[Optional[str], typer.Option(help="Which <name>_qa to read when the file holds several.")] = None,
        model: Annotated[Optional[str], typer.Option(help="Local Hugging Face model directory (default: embedded SmolLM2).")] = None,
    ) -> None:
        """Fit the DyPRAG parameter translator on the stored PRAG LoRAs (checkpointed, resumable)."""
        from engine.offline.augment import load_augment, slug
        from engine.errors import InputError
        from engine.store import EncodeConfig, LoraStore
        from engine.offline.train import TrainConfig, checkpoint_path, train_translator

        config = TrainConfig(p=p, epochs=epochs, learning_rate=lr, seed=seed, checkpoint_every=checkpoint_every, per_passage=per_passage)
        aug = load_augment(augment, aug_model)
        if not aug.records:
            raise InputError(f"{augment} has no augmented passages", "run `prag augment` first")
        with progress_bar() as progress, cancel_on_sigint() as cancel:
            settings, loaded = _load(model, store, progress)
            target = out or settings.home / "translators" / f"{slug(loaded.model_id)}-p{p}.safetensors"
            lora_store = LoraStore(settings.store_dir, loaded.model_id, EncodeConfig(epochs=lora_epochs, learning_rate=lora_lr))
            info = {"data_files": [str(Path(augment).expanduser().resolve())], "aug_model": aug.aug_model, "command": _command_line(),
                    **({"augment": aug.info} if aug.info else {})}
            summary = train_translator(loaded, aug.records, lora_store, target, config, progress, cancel, info, fresh, export_reference)
        if summary.new_steps == 0:
            console.print(f"already trained ({summary.steps} steps; checkpoint {checkpoint_path(target)}); wrote {target}", soft_wrap=True)
        else:
            resumed = f" (resumed at step {summary.resumed_from})" if summary.resumed_from else ""
            console.print(f"trained {summary.new_steps} steps{resumed} in {summary.seconds:.1f}s: {summary.seconds_per_step:.2f} s/step, "
                          f"{summary.cpu_seconds / summary.new_steps:.2f} CPU-s/step", soft_wrap=True)
        losses = " ".join(f"{k} {v:.4g}" for k, v in summary.final.items())
        console.print(f"final epoch losses: {losses}", soft_wrap=True)
        console.print(f"translator -> {target}" + (f" and {summary.reference}" if summary.reference else ""), soft_wrap=True)
