"""Named PRAG encode recipes: how a passage becomes a LoRA.

- `reference`: the PRAG papers' recipe (rank 2, alpha 32, one epoch at lr 3e-4 over three
  QA pairs, half of them with the passage in the prompt). Kept so LoRAs match the papers'
  artifacts; on a 135M model that starts from no warmed-up LoRA it stores almost nothing.
- `facts`: made for small models to store a passage's facts: every fact of every sentence
  asked two ways (`engine.offline.facts`), the question alone in the prompt (what PRAG is
  later asked), loss on the answer only, a higher rank in the upper layers only (backward
  stops there, and the lower layers run once per batch, not once per epoch: `FrozenBelow`),
  and enough steps to fit; at most 24 pairs, spread over a long passage. The README's table has
  what each change gave.
"""

from __future__ import annotations

from engine.errors import InputError
from engine.store import EncodeConfig

RECIPES: dict[str, EncodeConfig] = {
    "reference": EncodeConfig(),
    "facts": EncodeConfig(rank=8, alpha=16.0, learning_rate=5e-3, epochs=5, layout="question", loss_on="answer",
                          batch_size=4, qa="facts", layers_from=0.5, max_qa=24),
}
DEFAULT_RECIPE = "facts"
"""What `prag encode`, on-demand encoding and the explorer use unless told otherwise."""


def recipe_config(name: str) -> EncodeConfig:
    try:
        return RECIPES[name]
    except KeyError:
        raise InputError(f"unknown encode recipe {name!r}", f"choose one of: {', '.join(RECIPES)}") from None


def recipe_name(config: EncodeConfig) -> str | None:
    """The recipe `config` is, if it is one unchanged (a store folder says which)."""
    return next((name for name, known in RECIPES.items() if known == config), None)
