"""One greedy generation pass for several rows, each with its own prompt and adapter.

Why not `model.generate`: rows must stream token by token to a callback, stop
independently, honour a cancel event, and carry a different LoRA each. And the
prefill is grouped: rows that share a prompt are prefilled together without
padding, then their KV caches are left-padded and joined for the decode loop,
so a short question-only row never pays for a long RAG prompt's padding.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.adapters import Adapter
from engine.device import model_device
from engine.inject import inject

if TYPE_CHECKING:
    import torch


@dataclass
class RowResult:
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    latency_s: float = 0.0
    """Seconds from the start of the pass until this row stopped."""
    finished: bool = False
    """True when the row ended by itself (end of turn or of line), False when cut off or cancelled."""
    scores: list[float] = field(default_factory=list)
    """Teacher-forced log-probability of each scored continuation (same order as `score_ids`)."""


TokenCallback = Callable[[int, str, RowResult], None]
"""(row index, new text, the row so far): called from the generating thread."""


def stop_token_ids(tokenizer) -> set[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for token in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id >= 0:
            ids.add(token_id)
    return ids


def cache_kwarg(model) -> str:
    """The forward argument that takes the KV cache: `cache` since transformers 5.x renamed `past_key_values`."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _prefill(model, ids: torch.Tensor, mask: torch.Tensor, adapters: Sequence[Adapter | None],
             starts: Sequence[int] | None = None):
    import torch
    from transformers import DynamicCache

    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    with inject(model, adapters, starts), torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                    **{cache_kwarg(model): cache})
    return out.logits[:, -1, :], cache  # filled in place


def _left_pad(tensor: torch.Tensor, length: int) -> torch.Tensor:
    import torch.nn.functional as F

    pad = length - tensor.shape[-2]
    return F.pad(tensor, (0, 0, pad, 0)) if pad else tensor


def _grouped_prefill(model, tokenizer, prompts: Sequence[list[int]], adapters: Sequence[Adapter | None],
                     starts: Sequence[int] | None = None):
    """Prefill rows grouped by identical prompt; join caches with left padding."""
    import torch
    from transformers import DynamicCache

    device = model_device(model)
    starts = list(starts) if starts is not None else [0] * len(prompts)
    groups: dict[tuple[int, ...], list[int]] = {}
    for row, ids in enumerate(prompts):
        groups.setdefault(tuple(ids), []).append(row)
    length = max(len(p) for p in prompts)
    logits = [None] * len(prompts)
    keys: list[list] = []
    values: list[list] = []
    order: list[int] = []
    for ids, rows in groups.items():
        tensor = torch.tensor([list(ids)] * len(rows), dtype=torch.long, device=device)
        group_logits, cache = _prefill(model, tensor, torch.ones_like(tensor), [adapters[r] for r in rows], [starts[r] for r in rows])
        for i, row in enumerate(rows):
            logits[row] = group_logits[i]
        for layer_index, layer in enumerate(cache.layers):
            if layer_index == len(keys):
                keys.append([])
                values.append([])
            keys[layer_index].append(_left_pad(layer.keys, length))
            values[layer_index].append(_left_pad(layer.values, length))
        order.extend(rows)
    inverse = torch.tensor([order.index(r) for r in range(len(prompts))], device=device)
    merged = DynamicCache(config=model.config)
    for layer_index in range(len(keys)):
        merged.update(torch.cat(keys[layer_index])[inverse], torch.cat(values[layer_index])[inverse], layer_index)
    mask = torch.zeros(len(prompts), length, dtype=torch.long, device=device)
    for row, ids in enumerate(prompts):
        mask[row, length - len(ids):] = 1
    return torch.stack(logits), merged, mask


def _truncate(cache, length: int) -> None:
    """Drop cached positions past `length` (a scored continuation), in place.

    Our own slice, not `DynamicCache.crop`, whose argument changed meaning across transformers releases.
    """
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if keys is not None and keys.numel() and keys.shape[-2] > length:
            layer.keys = layer.keys[..., :length, :]
            layer.values = layer.values[..., :length, :]


def score_continuations(model, logits: torch.Tensor, cache, mask: torch.Tensor,
                        score_ids: Sequence[Sequence[list[int]]]) -> list[list[float]]:
    """Per row, the summed log-probability of each of that row's continuations right after its prompt.

    `score_ids[r]` are row r's continuations (rows of different questions score different answers).
    Reuses the prefill's KV cache: the j-th continuation of every row is fed in one step and the cache
    is cut back, so scoring costs a few decode-sized steps, not another prefill. A row whose j-th
    continuation is shorter than another's is padded after it; causal attention keeps the padding
    from its own scores. Call inside the rows' `inject` context and `inference_mode`.
    """
    import torch

    rows = logits.shape[0]
    length, device = mask.shape[1], mask.device
    positions = mask.sum(-1, keepdim=True) - 1
    first = torch.log_softmax(logits.float(), -1)
    scores: list[list[float]] = [[] for _ in range(rows)]
    for j in range(max((len(s) for s in score_ids), default=0)):
        conts = [list(s[j]) if j < len(s) else [] for s in score_ids]
        total = torch.stack([first[r, c[0]] if c else first.new_zeros(()) for r, c in enumerate(conts)])
        longest = max(len(c) for c in conts)
        if longest > 1:
            width = longest - 1
            feed = torch.tensor([(c[:-1] + [0] * width)[:width] for c in conts], device=device)
            targets = torch.tensor([(c[1:] + [0] * width)[:width] for c in conts], device=device)
            valid = torch.tensor([[t < len(c) - 1 for t in range(width)] for c in conts], device=device)
            step_mask = torch.cat([mask, torch.ones(rows, width, dtype=mask.dtype, device=device)], dim=1)
            out = model(input_ids=feed, attention_mask=step_mask, position_ids=positions + torch.arange(1, longest, device=device),
                        use_cache=True, **{cache_kwarg(model): cache})
            logp = torch.log_softmax(out.logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (rows, width)
            total = total + (logp * valid).sum(-1)
            _truncate(cache, length)
        for r, value in enumerate(total.tolist()):
            if j < len(score_ids[r]):
                scores[r].append(value if conts[r] else 0.0)
    return scores


def _can_join_caches(model) -> bool:
    """Sliding-window caches drop old positions, so padded joins would misalign them."""
    config = model.config
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return all(t == "full_attention" for t in layer_types)
    return getattr(config, "sliding_window", None) is None or getattr(config, "use_sliding_window", True) is False


def generate_rows(
    model,
    tokenizer,
    prompts: Sequence[str],
    adapters: Sequence[Adapter | None],
    max_new_tokens: int,
    on_token: TokenCallback | None = None,
    cancel: threading.Event | None = None,
    stop_at_newline: bool = True,
    ignore_eos: bool = False,
    score_ids: Sequence[list[int]] = (),
    row_score_ids: Sequence[Sequence[list[int]]] | None = None,
    adapt_from: Sequence[int] | None = None,
) -> list[RowResult]:
    """Greedy-decode every row in one batch; row i uses adapters[i] throughout.

    `adapt_from[i]`: row i's adapter leaves its first `adapt_from[i]` prompt tokens alone (the passages
    of a combine prompt, `engine.prompts.question_offset`); it acts on the rest and on every new token.

    `score_ids`: token ids of continuations (candidate answers) whose log-probability every row's
    prompt gives them, measured after the prefill and before decoding (`RowResult.scores`);
    `row_score_ids[i]`: row i's own continuations instead (rows of several questions in one pass).
    """
    import torch

    if len(prompts) != len(adapters):
        raise ValueError(f"{len(prompts)} prompts but {len(adapters)} adapters")
    start = time.perf_counter()
    results = [RowResult() for _ in prompts]
    if not prompts:
        return results
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    starts = list(adapt_from) if adapt_from is not None else [0] * len(prompts)
    if len(starts) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(starts)} adapt_from values")
    if _can_join_caches(model):
        logits, cache, mask = _grouped_prefill(model, tokenizer, encoded, adapters, starts)
    else:
        batch = tokenizer.pad({"input_ids": encoded}, return_tensors="pt", padding=True).to(model_device(model))
        mask = batch["attention_mask"]
        width = mask.shape[1]  # left padding shifts each row's prompt right
        padded = [start + width - len(ids) if start else 0 for start, ids in zip(starts, encoded, strict=True)]
        logits, cache = _prefill(model, batch["input_ids"], mask, adapters, padded)
    positions = mask.sum(-1, keepdim=True) - 1
    active = [True] * len(prompts)
    cache_name = cache_kwarg(model)
    with inject(model, adapters), torch.inference_mode():
        per_row = row_score_ids if row_score_ids is not None else [score_ids] * len(prompts)
        if any(per_row):
            for result, row_scores in zip(results, score_continuations(model, logits, cache, mask, per_row), strict=True):
                result.scores = row_scores
        for step in range(max_new_tokens):
            next_ids = logits.argmax(-1)
            for row, token in enumerate(next_ids.tolist()):
                if not active[row]:
                    continue
                result = results[row]
                if token in stops and not ignore_eos:
                    active[row], result.finished, result.latency_s = False, True, time.perf_counter() - start
                    continue
                result.token_ids.append(token)
                text = tokenizer.decode(result.token_ids, skip_special_tokens=True)
                delta, result.text = text[len(result.text):], text
                if on_token is not None and delta:
                    on_token(row, delta, result)
                if stop_at_newline and "\n" in text.lstrip():
                    active[row], result.finished, result.latency_s = False, True, time.perf_counter() - start
                elif len(result.token_ids) >= max_new_tokens:
                    active[row], result.latency_s = False, time.perf_counter() - start
            if not any(active) or step == max_new_tokens - 1 or (cancel is not None and cancel.is_set()):
                break
            feed = torch.tensor([[t if a else pad_id] for t, a in zip(next_ids.tolist(), active, strict=False)], device=mask.device)
            mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=mask.dtype, device=mask.device)], dim=1)
            positions = positions + 1
            out = model(input_ids=feed, attention_mask=mask, position_ids=positions, use_cache=True, **{cache_name: cache})
            logits = out.logits[:, -1, :]  # the cache grew in place
    end = time.perf_counter() - start
    for row, result in enumerate(results):
        if active[row]:
            result.latency_s = end
    return results
