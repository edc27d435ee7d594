"""The offline stages: PRAG encoding and translator training timed on sample passages, and what
the two approaches store (a LoRA per passage vs one translator).

The records are built here, without an LLM (gold or made-up QA pairs, the light rewrite), so
the timings are the encoder's and trainer's alone.
"""

from __future__ import annotations

from pathlib import Path

from engine.bench.figures import Figure
from engine.progress import ProgressCallback


def bench_storage(explorer, corpus_size: int, rank: int = 2) -> list[Figure]:
    from engine.models import MLP_MODULES
    from engine.translator import ParameterTranslator, TranslatorConfig

    if explorer.translator is not None:
        translator_bytes, note = explorer.translator.num_bytes(), "the loaded translator"
    else:
        translator_bytes = ParameterTranslator(TranslatorConfig(explorer.loaded.arch, rank=rank)).num_bytes()
        note = f"a translator of the default shape (p=2, rank {rank})"
    arch = explorer.loaded.arch
    one_lora = 4 * rank * arch.num_layers * sum(sum(arch.module_shape(m)) for m in MLP_MODULES)  # float32 A and B
    prag_bytes = one_lora * corpus_size
    return [
        Figure("translator_mb", translator_bytes / 1e6, "MB", 10.0, note),
        Figure("prag_store_vs_translator", prag_bytes / translator_bytes, "ratio", None,
               f"PRAG LoRAs for {corpus_size} passages ({prag_bytes / 1e6:.1f} MB, float32) / translator"),
    ]


def gold_records(count: int = 2, pairs: int = 3) -> list:
    """Augmented sample passages with their gold QA pair (the sample data has one per passage), used
    `pairs` times so each passage gets the reference recipe's 5 training examples (3 pairs)."""
    from engine.corpus import sample_questions_path
    from engine.offline.records import AugmentRecord
    from engine.offline.sources import gold_pairs, light_rewrite
    from engine.qa import load_qa

    records = []
    for item in load_qa(sample_questions_path())[:count]:
        passage = item.passages[0]
        gold = gold_pairs(passage, [item])
        records.append(AugmentRecord(passage, light_rewrite(passage.text), (gold * pairs)[:pairs]))
    return records


def bench_offline_stages(loaded, workdir: Path, quick: bool = False, progress: ProgressCallback | None = None) -> list[Figure]:
    """Encode two sample passages' LoRAs (engine.offline.encode), then train the translator a few steps on them (engine.offline.train)."""
    from engine.offline.distill import DistillConfig, distill_translator
    from engine.offline.encode import auto_passages_per_step, encode_records
    from engine.offline.recipes import recipe_config
    from engine.offline.train import TrainConfig, train_translator
    from engine.store import LoraStore

    records = gold_records(2)
    store = LoraStore(Path(workdir) / "loras", loaded.model_id)
    encoded = encode_records(loaded, records, store, "gold", progress, label="Benchmark: encoding PRAG LoRAs (reference recipe)")
    facts_store = LoraStore(Path(workdir) / "loras", loaded.model_id, recipe_config("facts"))
    together = auto_passages_per_step(loaded.placement.device, facts_store.config)
    facts = encode_records(loaded, facts_records(4), facts_store, "facts", progress, label="Benchmark: encoding PRAG LoRAs (facts recipe)",
                           passages_per_step=together)
    alone_store = LoraStore(Path(workdir) / "loras-alone", loaded.model_id, recipe_config("facts"))
    alone = encode_records(loaded, facts_records(4), alone_store, "facts", progress,
                           label="Benchmark: encoding PRAG LoRAs (facts recipe, one passage per step)")
    steps = encoded.steps // max(encoded.encoded, 1)
    per_passage = 1 if quick else 2
    config = TrainConfig(epochs=1, per_passage=per_passage, checkpoint_every=0)
    trained = train_translator(loaded, records, store, Path(workdir) / "translator.safetensors", config, progress)
    distill = DistillConfig(first_layer=loaded.arch.num_layers // 2, epochs=1, per_passage=2, batch_size=4, checkpoint_every=0)
    distilled = distill_translator(loaded, facts_records(4), Path(workdir) / "embeddings", Path(workdir) / "distilled.safetensors",
                                   distill, progress)
    return [
        Figure("encode_s_per_passage", encoded.seconds_per_passage, "s", 10.0,
               f"{encoded.encoded} sample passages, gold QA pair x3 -> the reference recipe's {steps} steps each (rank 2, 1 epoch); "
               f"{encoded.seconds_per_step:.2f} s/step, {encoded.cpu_seconds_per_passage:.1f} CPU-s/passage"),
        Figure("encode_facts_s_per_passage", facts.seconds_per_passage, "s", 10.0,
               f"{facts.encoded} fictional sample passages, the default 'facts' recipe ({facts.steps // max(facts.encoded, 1)} steps each, "
               f"{facts_store.config.epochs} epochs, rank {facts_store.config.rank}), {min(together, facts.encoded)} passages per step "
               f"(the default here); {facts.seconds_per_step:.2f} s/step"),
        Figure("encode_facts_together_vs_alone", facts.seconds_per_passage / max(alone.seconds_per_passage, 1e-9), "ratio", None,
               f"seconds per passage, {min(together, facts.encoded)} passages' LoRAs per step / one at a time "
               f"({alone.seconds_per_passage:.1f} s alone); the same LoRAs up to rounding (tests/test_offline_encode.py)"),
        Figure("encode_facts_vs_reference", facts.seconds_per_passage / encoded.seconds_per_passage, "ratio", None,
               "seconds per passage, facts recipe / reference recipe, same run"),
        Figure("lora_kb_per_passage_facts", facts_store.num_bytes() / max(facts.encoded, 1) / 1e3, "kB", None,
               f"one stored LoRA, facts recipe (float32; reference recipe: {store.num_bytes() / max(encoded.encoded, 1) / 1e3:.0f} kB)"),
        Figure("translator_train_s_per_step", trained.seconds_per_step, "s", None,
               f"{trained.new_steps} steps on those passages' LoRAs (p=2, batch 1, LM + KL + MSE loss; embeddings computed before); "
               f"{trained.cpu_seconds / max(trained.new_steps, 1):.2f} CPU-s/step"),
        Figure("translator_distill_s_per_step", distilled.seconds_per_step, "s", None,
               f"{distilled.new_steps} distillation steps of {distill.batch_size} examples (rank {distill.rank}, layers "
               f"{distill.first_layer}+: teacher reads the passage, student the question with the generated LoRA)"),
    ]


def facts_records(count: int) -> list:
    """Fictional sample passages with the 'facts' recipe's own QA pairs (what on-demand encoding trains on)."""
    from engine.corpus import load_corpus
    from engine.offline.facts import fact_pairs
    from engine.offline.records import AugmentRecord
    from engine.offline.sources import light_rewrite

    passages = [p for p in load_corpus(None) if p.id.startswith("fict-")][:count]
    return [AugmentRecord(p, light_rewrite(p.text), fact_pairs(p)) for p in passages]


def benchmark_records(count: int) -> list:
    """Augmented passages for timing the encoder: sample-corpus passages, three QA pairs each (the recipe's 5 steps)."""
    from engine.corpus import load_corpus
    from engine.offline.records import AugmentRecord, QAPair
    from engine.offline.sources import light_rewrite

    records = []
    for passage in load_corpus(None)[:count]:
        words = passage.text.split()
        pairs = [QAPair(f"What does the passage about {passage.title} say, part {i + 1}?", " ".join(words[3 * i:3 * i + 3]),
                        " ".join(words[: 8 + i])) for i in range(3)]
        records.append(AugmentRecord(passage, light_rewrite(passage.text), pairs))
    return records
