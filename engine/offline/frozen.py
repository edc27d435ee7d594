"""Replay the layers below a LoRA: while LoRAs train, what the layers under them compute never changes.

A LoRA in layers `first`.. leaves layers 0..first-1 exactly as the base model has them, so for
a given batch their output (and the keys and values they put in a KV cache) is the same in
every epoch. `FrozenBelow` runs them once per batch, keeps the output of layer first-1 and the
cache entries they wrote, and on every later pass of that batch skips them: the layer under
the first adapted one hands back what it returned before. The result is bit-for-bit what the
full pass gives (tests/test_offline_frozen.py); with the facts recipe (upper half adapted) it
saves a third of each step after the first epoch.

It works through each lower layer's own `forward`: a stand-in takes its place while a step
runs and is removed after, even when the step raises. The cache is written through the
public `Cache.update`, as an attention layer writes it, so any cache layout (sliding windows
included) stays consistent.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.models import decoder_layers

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


@dataclass
class _Call:
    """What the frozen layers gave on one call of the decoder (a step may call it more than once)."""

    output: Any = None
    """Layer first-1's return value, detached."""
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    """Keys and values each frozen layer wrote into an empty cache layer on this call (a cached prefix)."""
    returns_tuple: bool = False


@dataclass
class _Tape:
    calls: list[_Call] = field(default_factory=list)
    position: int = 0
    recording: bool = True


def _find_cache(kwargs: dict) -> Any:
    from transformers import Cache

    return next((value for value in kwargs.values() if isinstance(value, Cache)), None)


class _StandIn:
    """Takes a frozen layer's `forward` for one step: records its result, or replays it without running."""

    def __init__(self, forward, index: int, last: bool, tape: _Tape) -> None:
        self.forward, self.index, self.last, self.tape = forward, index, last, tape

    def __call__(self, hidden_states, *args, **kwargs):
        tape, cache = self.tape, _find_cache(kwargs)
        if self.index == 0:
            if tape.recording:
                tape.calls.append(_Call())
            call = tape.calls[tape.position]
            tape.position += 1
        else:
            call = tape.calls[tape.position - 1]
        if tape.recording:
            empty = cache is not None and cache.get_seq_length(self.index) == 0
            out = self.forward(hidden_states, *args, **kwargs)
            if empty and cache.get_seq_length(self.index) > 0:
                entry = cache.layers[self.index]
                call.cache[self.index] = (entry.keys.detach(), entry.values.detach())
            call.returns_tuple = isinstance(out, tuple)
            if self.last:
                call.output = tuple(o.detach() if hasattr(o, "detach") else o for o in out) if isinstance(out, tuple) else out.detach()
            return out
        if cache is not None and self.index in call.cache:
            cache.update(*call.cache[self.index], self.index)
        if self.last:
            return call.output
        return (hidden_states,) if call.returns_tuple else hidden_states


class FrozenBelow:
    """Records, then replays, layers 0..first-1 for each step key (e.g. the batch's index in an epoch)."""

    def __init__(self, model: nn.Module, first: int) -> None:
        self.model, self.first = model, first
        self.tapes: dict[Hashable, _Tape] = {}

    @contextmanager
    def step(self, key: Hashable) -> Iterator[None]:
        """Run the decoder calls of one step; the first step with `key` records, later ones replay."""
        if self.first <= 0:
            yield
            return
        tape = self.tapes.get(key)
        if tape is None:
            tape = self.tapes[key] = _Tape()
        else:
            tape.recording, tape.position = False, 0
        layers = decoder_layers(self.model)[: self.first]
        # A layer's own instance `forward` (accelerate puts one there) is kept and put back.
        saved = [layer.__dict__.get("forward") for layer in layers]
        try:
            for index, layer in enumerate(layers):
                layer.forward = _StandIn(layer.forward, index, index == self.first - 1, tape)
            yield
        except BaseException:
            if tape.recording:  # half a recording would replay wrong: the next step with this key records again
                del self.tapes[key]
            raise
        finally:
            for layer, own in zip(layers, saved, strict=True):
                if own is None:
                    layer.__dict__.pop("forward", None)
                else:
                    layer.forward = own
            tape.recording = False
