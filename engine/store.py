"""Content-addressed store of per-passage PRAG LoRAs.

    <root>/<model id>/<encode config key>/<passage hash>.safetensors

The key covers everything that changes the weights (model, passage text, training
recipe), so a LoRA is reused wherever the same passage shows up, shards written on
different machines merge by copying folders, and a change of recipe never mixes in
stale LoRAs. Files are written atomically, so a killed encoder leaves none half-written.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.adapters import Adapter, load_adapter, save_adapter
from engine.corpus import Passage
from engine.errors import ArtifactError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


_REFERENCE_LAYOUT = {"layout": "reference", "loss_on": "all", "batch_size": 1, "qa": "cloze", "layers_from": 0.0, "max_qa": 0}
"""The fields the reference recipe leaves at these values are not hashed: its store folders keep their names."""


QA_VERSIONS = {"facts": 3}
"""Generators of QA pairs whose output changed: the version goes into store keys and on-demand caches.
2: colours and unnamed subjects asked for; "what date", "which airport", "by whom" and "Which engineer
designed X?" phrasings; a span that ends a longer one is no longer asked apart (one answer per blank).
3: a person's description asked as "Who was X?"; an example keeps at most 30 words before its blank and 20 after."""


@dataclass(frozen=True)
class EncodeConfig:
    """How one passage's LoRA is trained (reference defaults; `engine.offline.recipes` names the useful ones)."""

    rank: int = 2
    alpha: float = 32.0
    learning_rate: float = 3e-4
    epochs: int = 1
    seed: int = 0
    layout: str = "reference"
    """Training examples: "reference" (half the QA pairs with the passage and with its rewrite in the
    prompt, the rest question-only) or "question" (every pair question-only: short, and what PRAG is asked)."""
    loss_on: str = "all"
    """"all" tokens (the reference) or the "answer" only."""
    batch_size: int = 1
    """Examples per optimizer step (padded)."""
    qa: str = "cloze"
    """QA pairs made on demand for a passage: "cloze" (3 fill-the-blank pairs) or "facts" (every fact, two phrasings)."""
    layers_from: float = 0.0
    """Adapt only the decoder layers from this fraction of the depth on (0: all, as the reference; 0.4 of
    30 layers: 12-29). A fraction, so a recipe means the same on a model of any depth."""
    max_qa: int = 0
    """Train on at most this many of a passage's QA pairs, spread over the passage (0: all). A long
    passage then costs what a short one does, and a rank-8 LoRA holds only so many facts anyway."""

    def first_layer(self, num_layers: int) -> int:
        return min(num_layers - 1, int(self.layers_from * num_layers))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def key(self) -> str:
        fields = asdict(self)
        if all(fields[k] == v for k, v in _REFERENCE_LAYOUT.items()):
            fields = {k: v for k, v in fields.items() if k not in _REFERENCE_LAYOUT}
        if self.qa in QA_VERSIONS:  # other pairs, other LoRAs: never reuse those of an older generator
            fields["qa_version"] = QA_VERSIONS[self.qa]
        blob = json.dumps(fields, sort_keys=True).encode()
        return f"r{self.rank}-a{self.alpha:g}-e{self.epochs}-{hashlib.sha256(blob).hexdigest()[:8]}"


GOLD = "gold"
"""QA pairs taken from a data set's own questions and answers (`prag augment --qa-from-data`)."""


def qa_source_of(aug_model: str, info: dict | None = None) -> str:
    """"gold" when an augmentation's QA pairs are a data set's gold ones, else "" (made from the passage)."""
    said = str((info or {}).get("qa_source", ""))
    return GOLD if aug_model == GOLD or said.startswith("gold") else ""


class LoraStore:
    """One model's LoRAs under one encode recipe, one file per passage (named by its content hash).

    LoRAs trained on gold QA pairs live in a folder of their own (`<recipe key>-gold`): those pairs
    contain the very questions an evaluation asks, so the explorer and `prag eval` must never pick
    them up for a passage; `prag encode` and `prag train` reach them with the same augmentation file.
    """

    def __init__(self, root: Path, model_id: str, config: EncodeConfig | None = None, qa_source: str = "") -> None:
        self.config = config or EncodeConfig()
        self.root = Path(root)
        self.qa_source = qa_source
        self.dir = self.root / _UNSAFE.sub("_", model_id) / (self.config.key() + (f"-{GOLD}" if qa_source == GOLD else ""))

    def path_for(self, passage: Passage) -> Path:
        return self.dir / f"{passage.key}.safetensors"

    def has(self, passage: Passage) -> bool:
        return self.path_for(passage).is_file()

    def get(self, passage: Passage) -> Adapter | None:
        """The passage's LoRA, or None when not encoded yet; a corrupt file is an ArtifactError."""
        path = self.path_for(passage)
        if not path.is_file():
            return None
        try:
            return load_adapter(path)
        except ArtifactError as exc:
            raise ArtifactError(f"{exc.message}", f"delete {path} and run `prag encode` again") from None

    def put(self, passage: Passage, adapter: Adapter, meta: dict | None = None) -> Path:
        path = self.path_for(passage)
        save_adapter(adapter, path, {"passage_id": passage.key, "title": passage.title, **(meta or {})})
        return path

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.safetensors")) if self.dir.is_dir() else []

    def num_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("*.safetensors")) if self.dir.is_dir() else 0
