"""The DyPRAG parameter translator: a passage's hidden state -> LoRA A and B for every MLP.

Per (module, layer) the reference has one tiny hypernetwork for A and one for B:

    e = [last-token hidden state of the raw passage ; layer index]      (hidden + 1)
    A = post_A(relu(pre_A(e))).view(rank, in_features)                  p -> rank * in
    B = post_B(relu(pre_B(e))).view(out_features, rank)                 p -> out * rank

We keep the same weights stacked per module, shape (layers, ...), so all layers of
all passages are translated with a handful of batched einsums instead of 6 x layers
small calls; `reference_state_dict` / `from_reference_state_dict` convert to and
from the DyPRAG checkpoint layout. The generated LoRA is applied unscaled (scale 1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from engine.adapters import Adapter
from engine.device import model_device
from engine.errors import ArtifactError
from engine.models import MLP_MODULES, LoadedModel, ModelArch

if TYPE_CHECKING:
    from engine.corpus import Passage

DYPRAG_SCALE = 1.0
_INIT_STD = 1e-7
_PARTS = ("pre_A", "post_A", "pre_B", "post_B")


@dataclass(frozen=True)
class TranslatorConfig:
    arch: ModelArch
    rank: int = 2
    p: int = 2
    """Hidden width of each hypernetwork (the paper's p; 2 gives a few MB)."""
    modules: tuple[str, ...] = MLP_MODULES
    first_layer: int = 0
    """LoRAs for layers first_layer..last only (the reference: 0, every layer)."""

    def __post_init__(self) -> None:
        if self.rank < 1 or self.p < 1:
            raise ValueError(f"rank and p must be positive, got rank={self.rank}, p={self.p}")
        if not 0 <= self.first_layer < self.arch.num_layers:
            raise ValueError(f"first_layer must be in 0..{self.arch.num_layers - 1}, got {self.first_layer}")

    @property
    def layers(self) -> range:
        return range(self.first_layer, self.arch.num_layers)


class ParameterTranslator(nn.Module):
    def __init__(self, config: TranslatorConfig) -> None:
        super().__init__()
        self.config = config
        arch, L, h = config.arch, len(config.layers), config.arch.hidden_size + 1
        self.weights = nn.ParameterDict()
        for module in config.modules:
            fan_in, fan_out = arch.module_shape(module)
            shapes = {"pre_A": (L, config.p, h), "post_A": (L, config.rank * fan_in, config.p),
                      "pre_B": (L, config.p, h), "post_B": (L, fan_out * config.rank, config.p)}
            for part, shape in shapes.items():
                self.weights[f"{module}__{part}"] = nn.Parameter(torch.randn(shape) * _INIT_STD)

    def forward(self, embeddings: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(n, hidden) -> module -> (A of shape (n, L, r, in), B of shape (n, L, out, r)), L = the translated layers."""
        arch, rank = self.config.arch, self.config.rank
        n, L = embeddings.shape[0], len(self.config.layers)
        layer_ids = torch.arange(self.config.first_layer, arch.num_layers, dtype=embeddings.dtype, device=embeddings.device)
        x = torch.cat([embeddings[:, None, :].expand(n, L, -1), layer_ids[None, :, None].expand(n, L, 1)], dim=-1)
        out = {}
        for module in self.config.modules:
            fan_in, fan_out = arch.module_shape(module)
            w = {part: self.weights[f"{module}__{part}"] for part in _PARTS}
            a = torch.einsum("nlp,lqp->nlq", torch.relu(torch.einsum("nlh,lph->nlp", x, w["pre_A"])), w["post_A"])
            b = torch.einsum("nlp,lqp->nlq", torch.relu(torch.einsum("nlh,lph->nlp", x, w["pre_B"])), w["post_B"])
            out[module] = (a.reshape(n, L, rank, fan_in), b.reshape(n, L, fan_out, rank))
        return out

    def adapters(self, embeddings: torch.Tensor) -> list[Adapter]:
        """One unscaled adapter per passage embedding; keeps gradients when they are on."""
        generated = self(embeddings)
        result = []
        for i in range(embeddings.shape[0]):
            pairs = {}
            for module, (a, b) in generated.items():
                for index, layer in enumerate(self.config.layers):
                    pairs[(layer, module)] = (a[i, index], b[i, index])
            result.append(Adapter(pairs, DYPRAG_SCALE, {"source": "dyprag"}))
        return result

    # --- the DyPRAG checkpoint layout -------------------------------------------------

    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        """Keys as in the reference: projector.{module}_{layer}.projector.{pre,post}_{A,B}_linear.weight (+ hypernet aliases)."""
        state = {}
        for module in self.config.modules:
            for index, layer in enumerate(self.config.layers):
                base = f"projector.{module}_{layer}.projector"
                for which in "AB":
                    pre = self.weights[f"{module}__pre_{which}"][index].detach().cpu().clone()
                    post = self.weights[f"{module}__post_{which}"][index].detach().cpu().clone()
                    state[f"{base}.pre_{which}_linear.weight"] = pre
                    state[f"{base}.post_{which}_linear.weight"] = post
                    state[f"{base}.{which}_hypernet.linear1.weight"] = pre
                    state[f"{base}.{which}_hypernet.linear2.weight"] = post
        return state

    def load_reference_state_dict(self, state: dict[str, torch.Tensor], source: str) -> None:
        with torch.no_grad():
            for module in self.config.modules:
                for index, layer in enumerate(self.config.layers):
                    base = f"projector.{module}_{layer}.projector"
                    for which in "AB":
                        for part, suffix in (("pre", "pre_{w}_linear"), ("post", "post_{w}_linear")):
                            key = f"{base}.{suffix.format(w=which)}.weight"
                            if key not in state:
                                raise ArtifactError(f"{source} lacks {key}", "is it a DyPRAG translator for this model?")
                            target = self.weights[f"{module}__{part}_{which}"][index]
                            if tuple(state[key].shape) != tuple(target.shape):
                                raise ArtifactError(
                                    f"{source}: {key} has shape {tuple(state[key].shape)}, this model needs {tuple(target.shape)}",
                                    "use a translator trained for this model (or retrain with `prag train`)",
                                )
                            target.copy_(state[key])

    def num_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.parameters())


# --- files ---------------------------------------------------------------------------


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_translator(translator: ParameterTranslator, path: Path, info: dict[str, Any] | None = None) -> None:
    """safetensors weights + a JSON sidecar describing the model and how it was trained."""
    from safetensors.torch import save_file

    from engine.atomic import atomic_path, write_text

    path = Path(path)
    config = translator.config
    sidecar = {
        "format": "prag-explorer-translator/1",
        **config.arch.as_dict(),
        "rank": config.rank,
        "p": config.p,
        "modules": list(config.modules),
        **({"first_layer": config.first_layer} if config.first_layer else {}),
        "scale": DYPRAG_SCALE,
        "scale_convention": "unscaled: delta W = B @ A, as the DyPRAG reference applies it",
        **(info or {}),
    }
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in translator.weights.items()}, str(tmp))
    write_text(sidecar_path(path), json.dumps(sidecar, indent=2) + "\n")


def export_reference(translator: ParameterTranslator, path: Path) -> None:
    """The DyPRAG `.pt` layout: torch.save({"model_state_dict": ...})."""
    from engine.atomic import atomic_path

    with atomic_path(Path(path)) as tmp:
        torch.save({"model_state_dict": translator.reference_state_dict()}, tmp)


def load_translator(path: Path, arch: ModelArch, rank: int | None = None) -> ParameterTranslator:
    """Load ours (.safetensors + .json) or a DyPRAG `.pt`; refuse shapes that do not fit `arch`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ArtifactError(f"translator {path} does not exist", "train one with `prag train` or pass --translator PATH")
    if path.suffix == ".pt":
        return _load_reference(path, arch)
    return _load_ours(path, arch)


def _load_ours(path: Path, arch: ModelArch) -> ParameterTranslator:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    side = sidecar_path(path)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"translator sidecar {side} is missing", "keep the .json next to the .safetensors file") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArtifactError(f"translator sidecar {side} is corrupt", "re-create it with `prag train`") from None
    if ((meta.get("hidden_size"), meta.get("intermediate_size"), meta.get("num_layers"))
            != (arch.hidden_size, arch.intermediate_size, arch.num_layers)):
        raise ArtifactError(
            f"translator {path.name} was made for {meta.get('model_id')} (hidden {meta.get('hidden_size')}, "
            f"intermediate {meta.get('intermediate_size')}, {meta.get('num_layers')} layers), not {arch.model_id} "
            f"(hidden {arch.hidden_size}, intermediate {arch.intermediate_size}, {arch.num_layers} layers)",
            "use a translator trained for this model or run `prag train`",
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"translator {path} is corrupt ({exc})", "re-create it with `prag train`") from None
    try:
        config = TranslatorConfig(arch, int(meta.get("rank", 2)), int(meta.get("p", 2)), tuple(meta.get("modules", MLP_MODULES)),
                                  int(meta.get("first_layer", 0)))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"translator sidecar {side} is invalid ({exc})", "re-create it with `prag train`") from None
    translator = ParameterTranslator(config)
    expected = {k: tuple(v.shape) for k, v in translator.weights.items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        wrong = sorted(set(expected.items()) ^ set(got.items()))[:1]
        raise ArtifactError(f"translator {path} does not match its sidecar ({wrong})", "re-create it with `prag train`")
    translator.weights.load_state_dict(state)
    translator.sidecar = meta
    return translator.eval()


def _load_reference(path: Path, arch: ModelArch) -> ParameterTranslator:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for truncated or hostile files
        raise ArtifactError(f"translator {path} cannot be read ({type(exc).__name__})", "is it a complete DyPRAG checkpoint?") from None
    state = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise ArtifactError(f"translator {path} has no model_state_dict", "expected torch.save({'model_state_dict': ...})")
    probe = next((v for k, v in state.items() if k.endswith("post_A_linear.weight")), None)
    pre = next((v for k, v in state.items() if k.endswith("pre_A_linear.weight")), None)
    if probe is None or pre is None:
        raise ArtifactError(f"{path} is not a DyPRAG translator", "expected projector.*.pre_A_linear.weight keys")
    p = int(pre.shape[0])
    rank = max(1, int(probe.shape[0]) // arch.hidden_size)
    translator = ParameterTranslator(TranslatorConfig(arch, rank=rank, p=p))
    translator.load_reference_state_dict(state, str(path))
    translator.sidecar = {"format": "dyprag-reference", "path": str(path)}
    return translator.eval()


# --- passage embeddings -----------------------------------------------------------------


@dataclass
class EmbeddingCache:
    """Last-token hidden states of raw passages, computed once per (model, passage)."""

    loaded: LoadedModel
    batch_size: int = 8
    _cache: dict[str, torch.Tensor] = field(default_factory=dict)

    def __call__(self, passages: Sequence[Passage]) -> torch.Tensor:
        """(n, hidden) embeddings, computing only the ones not cached yet."""
        missing = list(dict.fromkeys(p.key for p in passages if p.key not in self._cache))
        if missing:
            texts = {p.key: p.text for p in passages}
            for start in range(0, len(missing), self.batch_size):
                keys = missing[start:start + self.batch_size]
                for key, vector in zip(keys, passage_embeddings(self.loaded, [texts[k] for k in keys]), strict=False):
                    self._cache[key] = vector
        return torch.stack([self._cache[p.key] for p in passages])

    def __len__(self) -> int:
        return len(self._cache)


def passage_embeddings(loaded: LoadedModel, texts: Sequence[str]) -> torch.Tensor:
    """Final hidden state of each raw text's last token (no chat template), as DyPRAG does."""
    tokenizer = loaded.tokenizer
    batch = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=True).to(model_device(loaded.model))
    backbone = getattr(loaded.model, "model", loaded.model)
    with torch.inference_mode():
        out = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return hidden[:, -1, :].float().clone()  # left padding: the last position is each text's last token; float32 for the translator
