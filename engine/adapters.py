"""LoRA weights as plain data: per (layer, module) an A (r x in), a B (out x r), one scale.

    delta_W = scale * B @ A            (out x in, never formed during generation)

PRAG merges the LoRAs of the top-k passages by rank concatenation (peft's "cat",
i.e. the sum of the deltas); DyPRAG takes the element-wise mean of the generated
A and B matrices and applies them unscaled (scale 1.0). Keeping the scale explicit
makes both conventions exact.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ArtifactError
from engine.models import MLP_MODULES, ModelArch

if TYPE_CHECKING:
    import torch

Key = tuple[int, str]
"""(layer index, MLP module name)."""

_PEFT_KEY = re.compile(r"layers\.(\d+)\.mlp\.(gate_proj|up_proj|down_proj)\.lora_([AB])(?:\.[\w-]+)?\.weight$")


def peft_key(layer: int, module: str, which: str) -> str:
    """The peft/DyPRAG tensor name for one LoRA matrix."""
    return f"base_model.model.model.layers.{layer}.mlp.{module}.lora_{which}.weight"


@dataclass
class Adapter:
    """A set of LoRA pairs for MLP projections, with one scale for all of them."""

    pairs: dict[Key, tuple[torch.Tensor, torch.Tensor]]
    """(layer, module) -> (A of shape (r, in), B of shape (out, r))."""
    scale: float = 1.0
    """Multiplies B @ A: alpha / r for PRAG (peft), 1.0 for DyPRAG (the reference applies no scaling)."""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return max((a.shape[0] for a, _ in self.pairs.values()), default=0)

    def layer_norms(self, num_layers: int | None = None) -> list[dict[str, float | int]]:
        """Frobenius norm of `scale * B @ A` per layer and module, from r x r products."""
        layers = num_layers if num_layers is not None else 1 + max((layer for layer, _ in self.pairs), default=-1)
        rows: list[dict[str, float | int]] = [{"layer": i, **{m: 0.0 for m in MLP_MODULES}} for i in range(layers)]
        for (layer, module), (a, b) in self.pairs.items():
            if layer < layers:
                rows[layer][module] = lora_norm(a, b, self.scale)
        return rows

    def to(self, dtype: torch.dtype) -> Adapter:
        return Adapter({k: (a.to(dtype), b.to(dtype)) for k, (a, b) in self.pairs.items()}, self.scale, dict(self.meta))

    def detach(self) -> Adapter:
        return Adapter({k: (a.detach(), b.detach()) for k, (a, b) in self.pairs.items()}, self.scale, dict(self.meta))


def lora_norm(a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> float:
    """||scale * B A||_F without forming B A: sqrt(sum((B^T B) * (A A^T)))."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()  # float64 on the CPU: MPS has none
    btb = b.T @ b
    aat = a @ a.T
    return abs(scale) * math.sqrt(max(0.0, float((btb * aat).sum())))


def merge_sum(adapters: Sequence[Adapter], weights: Sequence[float] | None = None, name: str = "sum") -> Adapter:
    """Weighted sum of deltas by rank concatenation (peft `add_weighted_adapter(..., "cat")`; weights 1 by default).

    Exact for any weights: sum_i w_i s_i B_i A_i = [w_1 s_1 B_1 | w_2 s_2 B_2 | ...] @ [A_1; A_2; ...].
    """
    import torch

    if not adapters:
        raise ValueError("merge_sum needs at least one adapter")
    if weights is None:
        weights = [1.0] * len(adapters)
    if len(weights) != len(adapters):
        raise ValueError(f"{len(adapters)} adapters but {len(weights)} weights")
    keys = list(dict.fromkeys(k for adapter in adapters for k in adapter.pairs))
    pairs = {}
    for key in keys:
        parts = [(ad.pairs[key][0], ad.pairs[key][1] * (ad.scale * w)) for ad, w in zip(adapters, weights, strict=False) if key in ad.pairs]
        pairs[key] = (torch.cat([a for a, _ in parts], dim=0), torch.cat([b for _, b in parts], dim=1))
    return Adapter(pairs, 1.0, {"merge": name, "count": len(adapters)})


def keep_layers(adapter: Adapter, layers: tuple[int, int] | None) -> Adapter:
    """Only the pairs of layers first..last (inclusive): where in the model the knowledge acts."""
    if layers is None:
        return adapter
    first, last = layers
    kept = {key: ab for key, ab in adapter.pairs.items() if first <= key[0] <= last}
    return Adapter(kept, adapter.scale, {**adapter.meta, "layers": f"{first}-{last}"})


def merge_mean(adapters: Sequence[Adapter]) -> Adapter:
    """Element-wise mean of A and of B (DyPRAG's merge); all inputs share rank and scale."""
    import torch

    if not adapters:
        raise ValueError("merge_mean needs at least one adapter")
    scale = adapters[0].scale
    if any(ad.scale != scale for ad in adapters):
        raise ValueError(f"merge_mean needs equal scales, got {[ad.scale for ad in adapters]}")
    pairs = {}
    for key in adapters[0].pairs:
        pairs[key] = (
            torch.stack([ad.pairs[key][0] for ad in adapters]).mean(0),
            torch.stack([ad.pairs[key][1] for ad in adapters]).mean(0),
        )
    return Adapter(pairs, scale, {"merge": "mean", "count": len(adapters)})


def check_adapter(adapter: Adapter, arch: ModelArch, what: str = "adapter") -> None:
    """Refuse an adapter whose shapes do not fit the model, naming the sizes that disagree."""
    for (layer, module), (a, b) in adapter.pairs.items():
        if layer >= arch.num_layers:
            raise ArtifactError(f"{what} has layer {layer} but {arch.model_id} has {arch.num_layers} layers",
                                "use an adapter made for this model")
        fan_in, fan_out = arch.module_shape(module)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != fan_in or b.shape[0] != fan_out or a.shape[0] != b.shape[1]:
            raise ArtifactError(
                f"{what} {module} of layer {layer} has A {tuple(a.shape)} and B {tuple(b.shape)}, "
                f"but {arch.model_id} needs A (r, {fan_in}) and B ({fan_out}, r)",
                "use an adapter made for this model",
            )


def to_state_dict(adapter: Adapter) -> dict[str, torch.Tensor]:
    """peft tensor names -> float32 CPU tensors, whatever device and dtype the adapter was made on."""
    state = {}
    for (layer, module), (a, b) in sorted(adapter.pairs.items()):
        state[peft_key(layer, module, "A")] = a.detach().cpu().float().contiguous()
        state[peft_key(layer, module, "B")] = b.detach().cpu().float().contiguous()
    return state


def from_state_dict(state: dict[str, torch.Tensor], scale: float, source: str = "adapter") -> Adapter:
    found: dict[Key, dict[str, Any]] = {}
    for name, tensor in state.items():
        match = _PEFT_KEY.search(name)
        if match:
            found.setdefault((int(match.group(1)), match.group(2)), {})[match.group(3)] = tensor
    if not found:
        raise ArtifactError(f"{source} holds no gate/up/down LoRA tensors", "expected names like ...layers.0.mlp.up_proj.lora_A.weight")
    pairs = {}
    for key, ab in found.items():
        if set(ab) != {"A", "B"}:
            raise ArtifactError(f"{source} lacks lora_{'B' if 'A' in ab else 'A'} for layer {key[0]} {key[1]}",
                                "the file is incomplete: re-create it")
        pairs[key] = (ab["A"].float(), ab["B"].float())
    return Adapter(pairs, scale)


def save_adapter(adapter: Adapter, path: Path, meta: dict[str, Any] | None = None) -> None:
    """Write safetensors atomically; scale and meta go in the header."""
    from safetensors.torch import save_file

    from engine.atomic import atomic_path

    header = {"scale": repr(float(adapter.scale)), "meta": json.dumps({**adapter.meta, **(meta or {})})}
    with atomic_path(Path(path)) as tmp:
        save_file(to_state_dict(adapter), str(tmp), metadata=header)


def load_adapter(path: Path) -> Adapter:
    """Read one of our adapter files, or a peft adapter directory."""
    path = Path(path)
    if path.is_dir():
        return load_peft_dir(path)
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    if not path.is_file():
        raise ArtifactError(f"adapter {path} does not exist", "encode it with `prag encode`")
    # Whole-file bytes, not `safe_open(...).get_tensor`: the latter keeps two small Python objects
    # alive per tensor read (safetensors 0.8; cf. safetensors issue #369), and the explorer reads
    # 3 x 180 tensors per PRAG question, so a long session grew without bound.
    try:
        data = path.read_bytes()
        state = load_bytes(data)
        header = _safetensors_metadata(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"adapter {path} is corrupt ({exc})", "delete it and encode again") from None
    try:
        scale = float(header.get("scale", "1.0"))
        meta = json.loads(header.get("meta", "{}"))
    except ValueError:
        raise ArtifactError(f"adapter {path} has a corrupt header", "delete it and encode again") from None
    adapter = from_state_dict(state, scale, str(path))
    adapter.meta = meta
    return adapter


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file: an 8-byte little-endian header length, then a JSON header."""
    size = int.from_bytes(data[:8], "little")
    if len(data) < 8 or size > len(data) - 8:
        raise ValueError("the header is longer than the file")
    header = json.loads(data[8:8 + size])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def peft_scale(config: dict[str, Any]) -> float:
    r = int(config.get("r", 8))
    if r <= 0:
        raise ArtifactError(f"peft config has r={r}", "r must be positive")
    alpha = float(config.get("lora_alpha", r))
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def load_peft_dir(path: Path) -> Adapter:
    """A peft LoRA folder (adapter_config.json + adapter_model.safetensors|.bin), e.g. from PRAG."""
    config_path = path / "adapter_config.json"
    if not config_path.is_file():
        raise ArtifactError(f"{path} has no adapter_config.json", "pass a peft adapter directory")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{config_path} is not valid JSON ({exc})", "re-export the adapter") from None
    if (path / "adapter_model.safetensors").is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path / "adapter_model.safetensors"))
        except (SafetensorError, OSError) as exc:
            raise ArtifactError(f"{path}/adapter_model.safetensors is corrupt ({exc})", "re-export the adapter") from None
    elif (path / "adapter_model.bin").is_file():
        import torch

        try:
            state = torch.load(path / "adapter_model.bin", map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for bad pickles
            raise ArtifactError(f"{path}/adapter_model.bin cannot be read safely ({type(exc).__name__})",
                                "re-export as safetensors") from None
    else:
        raise ArtifactError(f"{path} has no adapter_model.safetensors or .bin", "pass a complete peft adapter directory")
    adapter = from_state_dict(state, peft_scale(config), str(path))
    adapter.meta = {"peft_config": {k: config.get(k) for k in ("r", "lora_alpha", "use_rslora", "target_modules")}}
    return adapter


def random_adapter(arch: ModelArch, rank: int, scale: float = 1.0, std: float = 0.02, seed: int = 0,
                   modules: Iterable[str] = MLP_MODULES) -> Adapter:
    """A random non-zero adapter (tests and benchmarks)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    pairs = {}
    for layer in range(arch.num_layers):
        for module in modules:
            fan_in, fan_out = arch.module_shape(module)
            pairs[(layer, module)] = (torch.randn(rank, fan_in, generator=gen) * std, torch.randn(fan_out, rank, generator=gen) * std)
    return Adapter(pairs, scale)
