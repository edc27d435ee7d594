"""Per-row low-rank deltas on MLP projections, through forward hooks.

    y = W x                       (the model's own projection, untouched)
    y += scale_i * (x A_i^T) B_i^T  for batch row i

Row i of a batch gets adapter i (or none: zero matrices). Ranks differ between
rows, so each (layer, module) stacks its A's into (batch, R, in) and its B's into
(batch, out, R), zero-padded to the largest rank R with the scale folded into B.
The stacks sit on the model's device in float32 whatever the model's dtype: the delta
is computed in float32 and cast to the activations' dtype only when added.
The model's weights are never modified: when the context exits, even through an
exception, only the hooks are removed and the model is exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from engine.adapters import Adapter, Key
from engine.device import model_device
from engine.models import decoder_layers

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


def stack_rows(adapters: Sequence[Adapter | None], device: torch.device | str | None = None,
               ) -> dict[Key, tuple[torch.Tensor, torch.Tensor]]:
    """(layer, module) -> (A_t of shape (batch, in, R), B_t of shape (batch, R, out)), zero rows for None; float32, on `device`."""
    import torch

    keys = list(dict.fromkeys(k for ad in adapters if ad is not None for k in ad.pairs))
    stacked = {}
    for key in keys:
        present = [(ad.pairs[key], ad.scale) for ad in adapters if ad is not None and key in ad.pairs]
        (a0, b0), _ = present[0]
        rank = max(a.shape[0] for (a, _), _ in present)
        fan_in, fan_out = a0.shape[1], b0.shape[0]
        a_rows, b_rows = [], []
        for ad in adapters:
            if ad is None or key not in ad.pairs:
                a_rows.append(a0.new_zeros(rank, fan_in))
                b_rows.append(b0.new_zeros(fan_out, rank))
                continue
            a, b = ad.pairs[key]
            pad = rank - a.shape[0]
            b = b * ad.scale if ad.scale != 1.0 else b
            if pad:
                a = torch.cat([a, a.new_zeros(pad, fan_in)], 0)
                b = torch.cat([b, b.new_zeros(fan_out, pad)], 1)
            a_rows.append(a)
            b_rows.append(b)
        a_t = torch.stack([a.to(device, torch.float32) for a in a_rows]).transpose(1, 2)
        b_t = torch.stack([b.to(device, torch.float32) for b in b_rows]).transpose(1, 2)
        stacked[key] = (a_t, b_t)
    return stacked


def _make_hook(a_t: torch.Tensor, b_t: torch.Tensor, starts: torch.Tensor | None = None):
    import torch

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0]  # (batch, seq, in)
        if x.shape[0] != a_t.shape[0]:
            raise ValueError(f"batch has {x.shape[0]} rows but {a_t.shape[0]} adapters were injected")
        delta = torch.bmm(torch.bmm(x.to(a_t.dtype), a_t), b_t)  # (batch, seq, out)
        if starts is not None:
            positions = torch.arange(x.shape[1], device=x.device)
            delta = delta * (positions[None, :] >= starts[:, None]).unsqueeze(-1).to(delta.dtype)
        return output + delta.to(output.dtype)

    return hook


@contextmanager
def inject(model: nn.Module, adapters: Sequence[Adapter | None], starts: Sequence[int] | None = None) -> Iterator[None]:
    """Add row i's low-rank delta to every adapted MLP projection while the context is open.

    `starts[i]`: row i's delta acts only on positions from this index on (a prompt's passages are
    then read by the model as it is). For one forward pass over whole prompts: positions count
    from the start of the tensor fed, so left padding must be counted in."""
    import torch

    handles = []
    try:
        if any(ad is not None for ad in adapters):
            layers = decoder_layers(model)
            device = model_device(model)
            if starts is not None and len(starts) != len(adapters):
                raise ValueError(f"{len(starts)} starts for {len(adapters)} adapters")
            from_ = torch.tensor(list(starts), device=device) if starts is not None and any(starts) else None
            for (layer, module), (a_t, b_t) in stack_rows(adapters, device).items():
                target = getattr(layers[layer].mlp, module)
                handles.append(target.register_forward_hook(_make_hook(a_t, b_t, from_)))
        yield
    finally:
        for handle in handles:
            handle.remove()
