"""Which encode recipe stores knowledge: PRAG alone on the sample corpus's fictional questions.

For every fictional question (the model cannot know the answer), one LoRA is trained on the
question's own passage with the recipe's QA pairs (never the question itself), then vanilla and
PRAG answer with the question alone in the prompt. Reported per recipe: the share PRAG answers
right, the share vanilla does, the share where the LoRA makes the gold answer more likely, the
median gain in gold log-probability, and seconds per passage. `prag bench --recipes` prints them;
the README's recipe table is this output.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

from engine.bench.figures import Figure
from engine.progress import ProgressCallback, report
from engine.store import EncodeConfig


def variants() -> dict[str, EncodeConfig]:
    """The named recipes, and single changes to the default one (what each ingredient is worth)."""
    from engine.offline.recipes import DEFAULT_RECIPE, RECIPES

    default = RECIPES[DEFAULT_RECIPE]
    return {
        **RECIPES,
        f"{DEFAULT_RECIPE}, cloze QA (3 pairs)": replace(default, qa="cloze"),
        f"{DEFAULT_RECIPE}, loss on every token": replace(default, loss_on="all"),
        f"{DEFAULT_RECIPE}, all layers": replace(default, layers_from=0.0),
        f"{DEFAULT_RECIPE}, rank 2": replace(default, rank=2, alpha=4.0),
    }


@dataclass
class RecipeOutcome:
    name: str
    questions: int = 0
    prag_right: int = 0
    vanilla_right: int = 0
    gold_up: int = 0
    gains: list[float] | None = None
    seconds: float = 0.0

    def figures(self) -> list[Figure]:
        n = max(self.questions, 1)
        gains = self.gains or [0.0]
        slug = self.name.replace(", ", "_").replace(" ", "-").replace("(", "").replace(")", "")
        return [
            Figure(f"recipe[{slug}]_prag_correct", self.prag_right / n, "share", None,
                   f"PRAG alone right on {self.prag_right}/{self.questions} fictional questions (vanilla {self.vanilla_right})"),
            Figure(f"recipe[{slug}]_gold_more_likely", self.gold_up / n, "share", None,
                   f"gold answer more likely than under vanilla on {self.gold_up}/{self.questions}; "
                   f"median gain {statistics.median(gains):.1f} nats"),
            Figure(f"recipe[{slug}]_encode_s_per_passage", self.seconds / n, "s", 10.0, "this recipe's LoRA for one passage"),
        ]


def fictional_items(limit: int | None = None) -> list:
    from engine.corpus import sample_questions_path
    from engine.qa import load_qa

    items = [item for item in load_qa(sample_questions_path()) if item.meta.get("group") == "fictional" and item.passages]
    return items[:limit]


def bench_recipe(loaded, name: str, config: EncodeConfig, items, progress: ProgressCallback | None = None) -> RecipeOutcome:
    from engine.generate import generate_rows
    from engine.metrics import contains_any
    from engine.offline.encode import on_demand_source, train_lora, training_batches
    from engine.prompts import clean_answer, generation_prompt

    outcome = RecipeOutcome(name, gains=[])
    source = on_demand_source(config.qa)
    for index, item in enumerate(items):
        report(progress, f"Benchmark: recipe {name}", index, len(items))
        record = source(item.passages[0], None)
        start = time.perf_counter()
        trained = train_lora(loaded, training_batches(loaded.tokenizer, record, config), config)
        outcome.seconds += time.perf_counter() - start
        prompt = generation_prompt(loaded.tokenizer, item.question)
        gold = loaded.tokenizer(f" {item.answers[0]}", add_special_tokens=False)["input_ids"]
        vanilla, prag = generate_rows(loaded.model, loaded.tokenizer, [prompt, prompt], [None, trained.adapter], 16, score_ids=[gold])
        outcome.questions += 1
        outcome.prag_right += contains_any(clean_answer(prag.text), item.answers)
        outcome.vanilla_right += contains_any(clean_answer(vanilla.text), item.answers)
        gain = prag.scores[0] - vanilla.scores[0]
        outcome.gold_up += gain > 0
        outcome.gains.append(gain)
    report(progress, f"Benchmark: recipe {name}", len(items), len(items))
    return outcome


def bench_recipes(loaded, names: list[str] | None = None, limit: int | None = None,
                  progress: ProgressCallback | None = None) -> list[Figure]:
    from engine.errors import InputError

    known = variants()
    chosen = names or list(known)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise InputError(f"unknown recipe variant {unknown[0]!r}", f"choose from: {'; '.join(known)}")
    items = fictional_items(limit)
    figures: list[Figure] = []
    for name in chosen:
        figures += bench_recipe(loaded, name, known[name], items, progress).figures()
    return figures
