"""Where the model runs and in which precision: `--device` / `--dtype`, resolved once at load.

`auto` picks CUDA, then Apple's MPS, then the CPU; float32 on the CPU (bfloat16 matmuls there
are emulated and slower), bfloat16 where the accelerator runs it natively, else float16.
Everything else (adapters, the translator, the per-row hooks, the KV cache, scoring) follows
the loaded model, so these two settings are the only place a device or dtype is chosen.
LoRA deltas are always computed in float32 and cast to the model's dtype when added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import InputError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
_DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
_DEVICE = re.compile(r"^(cpu|mps|cuda(?::(\d+))?)$")


@dataclass(frozen=True)
class Placement:
    """A resolved (device, dtype) pair, named as the user sees them."""

    device: str
    """e.g. "cpu", "cuda:0", "mps"."""
    dtype: str
    """"float32", "bfloat16" or "float16"."""

    @property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

    def label(self) -> str:
        return f"{self.device} {self.dtype}"


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _device_name(spec: str | None) -> str:
    """The spelling of a device, checked: "auto", "cpu", "mps", "cuda" or "cuda:N" (whether it exists is not asked)."""
    name = (spec or "auto").strip().lower()
    if name != "auto" and _DEVICE.match(name) is None:
        raise InputError(f"unknown device {spec!r}", "use auto, cpu, cuda, cuda:N or mps")
    return name


def _dtype_name(spec: str | None) -> str:
    """The dtype a spelling means ("bf16" -> "bfloat16"), checked against DTYPES."""
    name = (spec or "auto").strip().lower()
    name = _DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise InputError(f"unknown dtype {spec!r}", "use auto, float32, bfloat16 or float16")
    return name


def resolve_device(spec: str | None) -> str:
    """"auto" / "cpu" / "cuda" / "cuda:N" / "mps" -> a device string that exists here, or one line saying why not."""
    name = _device_name(spec)
    if name == "auto":
        if _cuda_count():
            return "cuda:0"
        return "mps" if _mps_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "mps":
        if not _mps_available():
            raise InputError("device mps is not available on this machine", "use --device cpu (or auto)")
        return "mps"
    count = _cuda_count()
    if not count:
        raise InputError(f"device {name} is not available: torch sees no CUDA GPU here", "use --device cpu (or auto)")
    index = int(_DEVICE.match(name).group(2) or 0)
    if index >= count:
        raise InputError(f"device {name} does not exist: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}",
                         "pick one of those, or --device auto")
    return f"cuda:{index}"


def _native_bfloat16(device: str) -> bool:
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    return device == "mps" and _runs(device, "bfloat16")


def _runs(device: str, dtype: str) -> bool:
    """Whether a small matmul in `dtype` works on `device` (older MPS has no bfloat16, older GPUs no kernels)."""
    import torch

    try:
        x = torch.ones(4, 4, device=device, dtype=getattr(torch, dtype))
        return bool(torch.isfinite((x @ x).float()).all())
    except (RuntimeError, TypeError):
        return False


def resolve_dtype(spec: str | None, device: str) -> str:
    """The dtype to load the model in on `device`; one line when the device cannot run it."""
    name = _dtype_name(spec)
    if name == "auto":
        if device == "cpu":
            return "float32"
        return "bfloat16" if _native_bfloat16(device) else "float16"
    if name == "bfloat16" and device.startswith("cuda") and not _native_bfloat16(device):
        raise InputError(f"{device} cannot run bfloat16 (the GPU predates it)", "use --dtype float16 or float32")
    if name != "float32" and not _runs(device, name):
        raise InputError(f"{device} cannot run {name} here", "use --dtype float32 (or auto)")
    return name


def check_names(device: str | None, dtype: str | None) -> None:
    """Refuse a device or dtype nobody could mean, without importing torch (a second at startup).

    Whether this machine has the device, and runs the dtype, is `resolve`'s to say when the model loads.
    """
    _device_name(device)
    _dtype_name(dtype)


def resolve(device: str | None, dtype: str | None) -> Placement:
    """Both settings at once, device first (the dtype's check depends on it)."""
    where = resolve_device(device)
    return Placement(where, resolve_dtype(dtype, where))


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's weights: where every tensor fed to it must live."""
    return next(model.parameters()).device
