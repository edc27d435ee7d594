"""`prag augment`, `prag encode`, `prag train`: the offline PRAG / DyPRAG stages.

Each is resumable: rerun the same command and finished work is skipped. Ctrl-C asks
the engine to stop after the current step (it saves what it has and exits 2 with
one line); a second Ctrl-C stops at once, losing only the unfinished step.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import options
from engine.cli.common import cancel_on_sigint, console, handle_errors, positive_flag, progress_bar, quiet_libraries, settings_from
from engine.validate import not_negative


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["prag", *sys.argv[1:]])


def _load(model: str | None, store: Path | None, progress, device: str | None, dtype: str | None):
    from engine.session import open_model

    settings = settings_from(model=model, store=store, device=device, dtype=dtype)
    quiet_libraries()
    return settings, open_model(settings, progress)


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def augment(
        out: Annotated[Path, typer.Option("--out", "-o", help="Augmentation JSON to write (or extend).")],
        corpus: options.Corpus = None,
        data: options.Data = None,
        qa_from_data: Annotated[bool, typer.Option("--qa-from-data", help="Take gold QA pairs from --data instead of the LLM.")] = False,
        qa_cloze: Annotated[bool, typer.Option(
            "--qa-cloze", help="Blank a name, number or ending of the passage's own sentences (no LLM, no gold answers; fast).")] = False,
        qa_facts: Annotated[bool, typer.Option(
            "--qa-facts", help="Every fact of every sentence, as a blank and as a 'what' question: the QA pairs of the "
                               "'facts' encode recipe (no LLM, no gold answers; fast; ignores --max-qa).")] = False,
        rewrite: Annotated[str | None, typer.Option(
            help="'light' (deterministic synonym swaps) or 'llm'. Default: light with --qa-from-data or --qa-cloze, else llm.")] = None,
        limit: Annotated[int | None, typer.Option(help="Only the first N passages.")] = None,
        questions: Annotated[int | None, typer.Option(
            help="Only the passages of the first N questions of --data (those `prag eval --limit N` reads).")] = None,
        skip_questions: Annotated[int, typer.Option(
            help="Leave out every passage of the first N questions of --data (those `prag eval --limit N` tests on): "
                 "training passages that never meet the evaluation.")] = 0,
        sample: Annotated[int | None, typer.Option(help="A seeded random N passages spread over the whole file (file order kept).")] = None,
        seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
        aug_model: Annotated[str | None, typer.Option(
            help="Key prefix: <name>_rewrite / <name>_qa (default: the model name, or 'gold').")] = None,
        min_qa: Annotated[int, typer.Option(help="QA pairs a passage needs, else it is recorded as failed.")] = 3,
        max_qa: Annotated[int, typer.Option(help="QA pairs kept per passage (the reference keeps 3).")] = 3,
        attempts: Annotated[int, typer.Option(help="LLM tries per passage (greedy, then seeded sampling).")] = 4,
        retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try passages recorded as failed again.")] = False,
        reference_layout: Annotated[bool, typer.Option(
            "--reference-layout", help="Write the reference tools' per-question entries wrapping each item.")] = False,
        model: options.Model = None,
        device: options.Device = None,
        dtype: options.Dtype = None,
    ) -> None:
        """Write one rewrite and QA pairs per passage, in the PRAG augmentation layout (resumable).

        The passages come from --corpus, or from the QA file --data (and with --qa-from-data its questions
        become the QA pairs).
        """
        from engine.errors import InputError
        from engine.offline.augment import LLMAugmenter, augment_passages, llm_source
        from engine.offline.records import slug, status_path
        from engine.offline.sources import gold_qa_index, gold_source, passages_from, sample_passages
        from engine.qa import load_qa

        if corpus is None and data is None:
            raise InputError("nothing to augment", "pass --corpus PATH or --data QA.jsonl")
        if qa_from_data and data is None:
            raise InputError("--qa-from-data needs --data QA.jsonl", "pass the QA file whose questions to use")
        if qa_from_data + qa_cloze + qa_facts > 1:
            raise InputError("--qa-from-data, --qa-cloze and --qa-facts all choose the QA pairs", "pass one of them")
        rewrite = rewrite or ("light" if qa_from_data or qa_cloze or qa_facts else "llm")
        if rewrite not in ("light", "llm"):
            raise InputError(f"--rewrite must be 'light' or 'llm', got {rewrite!r}", "choose one of the two")
        if (qa_cloze or qa_facts) and rewrite == "llm":
            raise InputError("--qa-cloze and --qa-facts go with the light rewrite", "leave out --rewrite llm")
        if not 1 <= min_qa <= max_qa:
            raise InputError(f"need 1 <= --min-qa <= --max-qa, got {min_qa} and {max_qa}", "e.g. --min-qa 3 --max-qa 3")
        for name, value in (("--limit", limit), ("--sample", sample), ("--questions", questions)):
            positive_flag(value, name)
        if sum(v is not None for v in (sample, limit, questions)) > 1:
            raise InputError("--sample, --limit and --questions all choose passages", "pass one of them")
        if questions is not None and data is None:
            raise InputError("--questions needs --data QA.jsonl", "pass the QA file whose first questions to take")
        not_negative(skip_questions, "--skip-questions", "e.g. --skip-questions 200")
        if skip_questions and data is None:
            raise InputError("--skip-questions needs --data QA.jsonl", "pass the QA file whose first questions to leave out")
        passages = passages_from(corpus, data, questions, skip_questions)
        passages = sample_passages(passages, sample, seed) if sample else passages[:limit]
        with progress_bar() as progress, cancel_on_sigint() as cancel:
            augmenter = None
            if not (qa_from_data or qa_cloze or qa_facts) or rewrite == "llm":
                _, loaded = _load(model, None, progress, device, dtype)
                augmenter = LLMAugmenter(loaded, attempts=max(1, attempts), min_qa=min_qa, max_qa=max_qa)
            if qa_cloze:
                from engine.offline.cloze import cloze_source

                source = cloze_source(min_qa, max_qa)
                name = aug_model or "cloze"
                info = {"qa_source": "cloze: blanked spans of the passage's sentences", "rewrite_source": "light"}
            elif qa_facts:
                from engine.offline.facts import facts_source

                source = facts_source(min_qa)
                name = aug_model or "facts"
                info = {"qa_source": "facts: every salient span of every sentence, blanked and as a 'what' question",
                        "rewrite_source": "light"}
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
        fallbacks = (f", {augmenter.rewrite_fallbacks} LLM rewrites replaced by the light one"
                     if augmenter and augmenter.rewrite_fallbacks else "")
        console.print(f"augmented {summary.augmented} passages ({summary.skipped} already done, {summary.failed} failed{fallbacks}) "
                      f"in {summary.seconds:.1f}s -> {out}", soft_wrap=True)
        if summary.failed:
            console.print(f"[yellow]failed passages and reasons: {status_path(out)}[/]", soft_wrap=True)

    @app.command()
    @handle_errors
    def encode(
        augment: options.AugmentInput,
        store: options.Store = None,
        recipe: options.Recipe = None,
        epochs: Annotated[int | None, typer.Option(
            help="Epochs per passage (default: the recipe's; another value makes a store folder of its own).")] = None,
        lr: Annotated[float | None, typer.Option("--lr", help="AdamW learning rate (default: the recipe's).")] = None,
        shard: Annotated[str | None, typer.Option(help="Encode only shard i/n (0 <= i < n), chosen by passage hash.")] = None,
        ray: options.Ray = False,
        ray_address: options.RayAddress = None,
        workers: options.Workers = 2,
        aug_model: options.AugModel = None,
        limit: Annotated[int | None, typer.Option(help="Only the first N passages of the file.")] = None,
        model: options.Model = None,
        passages_per_step: Annotated[int | None, typer.Option(
            help="LoRAs trained together, their examples in one forward pass (default: 8 on a CPU with the facts recipe, "
                 "1 with the reference recipe, 16 on a GPU).")] = None,
        device: options.Device = None,
        dtype: options.Dtype = None,
    ) -> None:
        """Train one PRAG LoRA per augmented passage into the store (resumable, shardable)."""
        from dataclasses import replace

        from engine.errors import InputError
        from engine.offline.encode import auto_passages_per_step, encode_records, parse_shard
        from engine.offline.recipes import recipe_config
        from engine.offline.records import load_augment
        from engine.store import LoraStore, qa_source_of

        positive_flag(epochs, "--epochs")
        positive_flag(lr, "--lr")
        settings = settings_from(model=model, store=store, recipe=recipe, device=device, dtype=dtype)
        config = recipe_config(settings.recipe)
        config = replace(config, epochs=epochs or config.epochs, learning_rate=lr or config.learning_rate)
        positive_flag(limit, "--limit")
        positive_flag(workers, "--workers")
        positive_flag(passages_per_step, "--passages-per-step")
        chosen_shard = parse_shard(shard)
        aug = load_augment(augment, aug_model)
        records = aug.records[:limit]
        if not records:
            raise InputError(f"{augment} has no augmented passages", "run `prag augment` first")
        with progress_bar() as progress, cancel_on_sigint() as cancel:
            if ray:
                from engine.distributed import RayOptions, encode_on_ray

                quiet_libraries()
                summary = encode_on_ray(records, settings, config, aug.aug_model,
                                        RayOptions(ray_address, workers), progress, cancel, chosen_shard)
                lora_dir = summary.store_dir
            else:
                from engine.session import open_model

                quiet_libraries()
                loaded = open_model(settings, progress)
                lora_store = LoraStore(settings.store_dir, loaded.model_id, config, qa_source_of(aug.aug_model, aug.info))
                per_step = passages_per_step or auto_passages_per_step(loaded.placement.device, config)
                summary = encode_records(loaded, records, lora_store, aug.aug_model, progress, cancel, chosen_shard,
                                         passages_per_step=per_step)
                lora_dir = lora_store.dir
        where = f" (shard {chosen_shard[0]}/{chosen_shard[1]})" if chosen_shard else ""
        timing = (f" in {summary.seconds:.1f}s: {summary.seconds_per_passage:.2f} s/passage, {summary.seconds_per_step:.2f} s/step, "
                  f"{summary.cpu_seconds_per_passage:.2f} CPU-s/passage" if summary.encoded else "")
        console.print(f"encoded {summary.encoded} LoRAs{where} ({summary.skipped} already in the store){timing} -> {lora_dir}",
                      soft_wrap=True)

    @app.command()
    @handle_errors
    def train(
        augment: options.AugmentInput,
        store: options.Store = None,
        out: Annotated[Path | None, typer.Option(
            "--out", "-o", help="Translator .safetensors (default: $PRAG_HOME/translators/...).")] = None,
        objective: Annotated[str, typer.Option(
            help="reference: LM + KL + MSE to each passage's stored PRAG LoRA (needs `prag encode` first); distill: LM + KL to "
                 "the model reading the passage, no stored LoRAs; auto: reference when every passage has a LoRA, else distill.")] = "auto",
        p: Annotated[int, typer.Option("--p", help="Hypernetwork width p.")] = 2,
        epochs: Annotated[int, typer.Option(help="Passes over the training examples.")] = 1,
        lr: Annotated[float | None, typer.Option("--lr", help="AdamW learning rate (default: reference 1e-5, distill 1e-3).")] = None,
        checkpoint_every: Annotated[int, typer.Option(
            help="Save a checkpoint every N steps and at each epoch end (0: at epoch ends only).")] = 50,
        per_passage: Annotated[int | None, typer.Option(
            help="Examples per passage, 0 = all (default: reference all of the PRAG recipe's, distill 4 QA pairs).")] = None,
        draw: Annotated[str, typer.Option(
            help="distill: which --per-passage pairs, a passage's first (its opening sentence's) or random (seeded).")] = "first",
        rank: Annotated[int, typer.Option(help="distill: rank of the generated LoRAs (the facts recipe's 8).")] = 8,
        first_layer: Annotated[int | None, typer.Option(
            help="distill: generate LoRAs for this layer and above (default: the upper half, as the facts recipe).")] = None,
        batch_size: Annotated[int, typer.Option(help="distill: examples per step, each with its own passage's LoRA.")] = 4,
        kl_weight: Annotated[float, typer.Option(help="distill: weight of KL(teacher reading the passage || student).")] = 1.0,
        combine_weight: Annotated[float, typer.Option(
            help="distill: weight of the answer's loss with the passage also in the prompt (DyPRAG-combine).")] = 0.0,
        hidden_weight: Annotated[float, typer.Option(
            help="distill: weight of matching the teacher's last hidden states at the answer (relative MSE).")] = 0.0,
        locality_weight: Annotated[float, typer.Option(
            help="distill: weight of KL(bare model || model carrying another passage's LoRA) on question-only prompts; "
                 "a LoRA must leave questions about other passages alone. Needs --batch-size 2 or more.")] = 0.0,
        limit: Annotated[int | None, typer.Option(help="Only the first N passages of --augment (after --offset).")] = None,
        offset: Annotated[int, typer.Option(help="Skip the first N passages of --augment: go on with passages an --init "
                                                 "translator never saw.")] = 0,
        init: Annotated[Path | None, typer.Option(
            help="distill: start from this trained translator (same --rank, --p, --first-layer) instead of a fresh one, "
                 "to go on training it on more passages.")] = None,
        max_steps: Annotated[int | None, typer.Option(
            help="Stop after N steps in all (mid-epoch if need be) and write the translator; rerun with more to go on.")] = None,
        lora_epochs: Annotated[int, typer.Option(help="reference: --epochs the LoRAs were encoded with (finds them in the store).")] = 1,
        lora_lr: Annotated[float, typer.Option(help="reference: --lr the LoRAs were encoded with.")] = 3e-4,
        seed: Annotated[int, typer.Option(help="Seed of the translator init and the data order.")] = 0,
        export_reference: Annotated[bool, typer.Option(
            "--export-reference", help="Also write the DyPRAG .pt layout beside --out.")] = False,
        fresh: Annotated[bool, typer.Option("--fresh", help="Ignore an existing checkpoint and start over.")] = False,
        aug_model: options.AugModel = None,
        model: options.Model = None,
        device: options.Device = None,
        dtype: options.Dtype = None,
    ) -> None:
        """Fit the DyPRAG parameter translator (checkpointed, resumable): on stored PRAG LoRAs, or by distillation."""
        from engine.errors import InputError
        from engine.methods import check_choice
        from engine.offline.distill import check_locality
        from engine.offline.records import load_augment, slug
        from engine.offline.train import checkpoint_path
        from engine.store import EncodeConfig, LoraStore, qa_source_of

        objective = check_choice(objective, ("auto", "reference", "distill"), "objective")
        draw = check_choice(draw, ("first", "random"), "draw")
        for flag, value in (("--p", p), ("--epochs", epochs), ("--lr", lr), ("--lora-epochs", lora_epochs), ("--lora-lr", lora_lr),
                            ("--rank", rank), ("--batch-size", batch_size), ("--limit", limit), ("--max-steps", max_steps)):
            positive_flag(value, flag)
        not_negative(checkpoint_every, "--checkpoint-every", "pass 0 (only at epoch ends) or 1 or more")
        not_negative(offset, "--offset", "e.g. --offset 700 after a translator trained with --limit 700")
        if init is not None and objective == "reference":
            raise InputError("--init goes on training a distilled translator", "use it with --objective distill")
        if init is not None and not init.expanduser().is_file():
            raise InputError(f"--init translator {init} does not exist", "give a trained translator's .safetensors (its .json beside it)")
        for flag, number in (("--per-passage", per_passage), ("--first-layer", first_layer), ("--kl-weight", kl_weight),
                             ("--combine-weight", combine_weight), ("--hidden-weight", hidden_weight),
                             ("--locality-weight", locality_weight)):
            if number is not None:
                not_negative(number, flag)
        check_locality(locality_weight, batch_size)  # before the model loads
        aug = load_augment(augment, aug_model)
        records = aug.records[offset:][:limit]
        if not records:
            if offset:
                raise InputError(f"{augment} has {len(aug.records)} augmented passages, none after --offset {offset}",
                                 "use a smaller --offset or augment more passages")
            raise InputError(f"{augment} has no augmented passages", "run `prag augment` first")
        with progress_bar() as progress, cancel_on_sigint() as cancel:
            settings, loaded = _load(model, store, progress, device, dtype)
            lora_store = LoraStore(settings.store_dir, loaded.model_id, EncodeConfig(epochs=lora_epochs, learning_rate=lora_lr),
                                   qa_source_of(aug.aug_model, aug.info))
            if objective == "auto":
                objective = "reference" if init is None and all(lora_store.has(r.passage) for r in records) else "distill"
            info = {"data_files": [str(Path(augment).expanduser().resolve())], "aug_model": aug.aug_model, "command": _command_line(),
                    **({"augment": aug.info} if aug.info else {})}
            if objective == "distill":
                from engine.offline.distill import DistillConfig, distill_translator
                from engine.offline.train import embedding_dir

                layer = first_layer if first_layer is not None else loaded.arch.num_layers // 2
                config = DistillConfig(rank=rank, first_layer=layer, p=p, epochs=epochs, learning_rate=lr or 1e-3,
                                       batch_size=batch_size, per_passage=4 if per_passage is None else per_passage,
                                       kl_weight=kl_weight, combine_weight=combine_weight, hidden_weight=hidden_weight,
                                       locality_weight=locality_weight, draw=draw,
                                       seed=seed,
                                       checkpoint_every=checkpoint_every,
                                       max_steps=max_steps or 0)
                target = out or settings.home / "translators" / f"{slug(loaded.model_id)}-distill-r{rank}-p{p}.safetensors"
                summary = distill_translator(loaded, records, embedding_dir(lora_store), target, config, progress, cancel, info,
                                             fresh, export_reference, init)
            else:
                from engine.offline.train import TrainConfig, train_translator

                config = TrainConfig(p=p, epochs=epochs, learning_rate=lr or 1e-5, seed=seed, checkpoint_every=checkpoint_every,
                                     per_passage=per_passage or 0, max_steps=max_steps or 0)
                target = out or settings.home / "translators" / f"{slug(loaded.model_id)}-p{p}.safetensors"
                summary = train_translator(loaded, records, lora_store, target, config, progress, cancel, info, fresh, export_reference)
        if summary.new_steps == 0:
            console.print(f"already trained ({summary.steps} steps; checkpoint {checkpoint_path(target)}); wrote {target}", soft_wrap=True)
        else:
            resumed = f" (resumed at step {summary.resumed_from})" if summary.resumed_from else ""
            pace = f"{summary.seconds_per_step:.2f} s/step, {summary.cpu_seconds / summary.new_steps:.2f} CPU-s/step"
            console.print(f"trained {summary.new_steps} steps ({objective}){resumed} in {summary.seconds:.1f}s: {pace}", soft_wrap=True)
        losses = " ".join(f"{k} {v:.4g}" for k, v in summary.final.items())
        console.print(f"final epoch losses: {losses}", soft_wrap=True)
        console.print(f"translator -> {target}" + (f" and {summary.reference}" if summary.reference else ""), soft_wrap=True)
