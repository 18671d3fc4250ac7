"""Attention from a short query span to a long cached prefix, without full attention maps.

``output_attentions=True`` materialises layers x heads x L x L weights (gigabytes for a
few thousand tokens) and forces eager attention. ICR needs only the rows of the query span.
So the prefix is prefilled once with the fast attention kernel and its KV cache kept; the
query span then runs against the cache while forward hooks on the chosen layers' attention
modules recompute the span's query states and form

    softmax(Q_span K^T * scale + causal mask)    (GQA heads repeated, fp32)

from the keys the cache holds after the span was appended. Each layer's rows are reduced
as soon as they exist, so memory is O(heads x span x length) at a time, or
O(layers x heads x span x length) when the rows are kept for inspection.

Layers above the highest chosen one cannot influence the chosen layers' attention, so
both the prefill and the span pass stop there (the Selective-ICR saving).

The query recomputation follows the Llama family (Qwen2/Qwen3, Llama, Mistral): ``q_proj``,
an optional ``q_norm``, rotate-half RoPE with the ``position_embeddings`` the model passes
to the attention module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from pursuit.retrievers.lm.causal import cache_kwargs

__all__ = ["SpanAttention", "decoder_layers", "prefill", "reset_cache", "span_attention"]


class _StopForward(Exception):
    """Raised by a hook after the last layer that matters, to skip the rest of the model."""


def decoder_layers(model: Any) -> Any:
    """The decoder layer list of a transformers causal LM (``model.model.layers``)."""
    base = getattr(model, "base_model", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise TypeError(f"{type(model).__name__} has no decoder layers at base_model.layers; "
                        "attention read-out supports Llama-family models (Qwen2, Llama, Mistral)")
    return layers


def _run(model: Any, ids: Sequence[int], cache: DynamicCache, last_layer: int) -> None:
    """Feed ``ids`` after what ``cache`` holds, stopping after decoder layer ``last_layer``."""
    layers = decoder_layers(model)
    device = next(model.parameters()).device
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=device)

    def stop(module: Any, args: Any, output: Any) -> None:
        raise _StopForward

    handle = None
    if last_layer < len(layers) - 1:
        handle = layers[last_layer].register_forward_hook(stop)
    try:
        # The base model, not the LM head: logits over a 150k vocabulary for every prefix
        # token would cost more memory than the whole KV cache.
        model.base_model(input_ids=input_ids, use_cache=True,
                         **cache_kwargs(model.base_model, cache))
    except _StopForward:
        pass
    finally:
        if handle is not None:
            handle.remove()


def prefill(model: Any, ids: Sequence[int], *, last_layer: int | None = None) -> DynamicCache:
    """Run the prefix ``ids`` once and return its KV cache.

    Args:
        model: A transformers causal LM.
        ids: Prefix token ids.
        last_layer: Stop after this decoder layer (the cache then holds layers up to it);
            ``None`` runs all layers.
    """
    n_layers = len(decoder_layers(model))
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        _run(model, ids, cache, n_layers - 1 if last_layer is None else last_layer)
    return cache


def reset_cache(cache: DynamicCache, length: int) -> None:
    """Drop every cached token after the first ``length`` in every layer (in place)."""
    layers: list[Any] = list(cache.layers)  # DynamicLayer; the union type hides crop()
    for layer in layers:
        current = layer.get_seq_length()
        if current > length:
            # transformers 5.24: a negative count removes that many tokens from the end.
            layer.crop(-(current - length))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _span_queries(module: Any, kwargs: dict[str, Any]) -> torch.Tensor:
    """The post-RoPE query states the attention module computed, shape (1, heads, S, d)."""
    hidden = kwargs["hidden_states"]
    cos, sin = kwargs["position_embeddings"]
    q = module.q_proj(hidden).view(*hidden.shape[:-1], -1, module.head_dim)
    if getattr(module, "q_norm", None) is not None:
        q = module.q_norm(q)
    q = q.transpose(1, 2)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    # Same dtype and order of operations as the model, so the states match bit for bit.
    return (q * cos) + (_rotate_half(q) * sin)


def query_rows(q: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention rows of the last ``S`` positions over all ``L`` keys, in fp32.

    Args:
        q: Query states (heads, S, d) of positions ``L - S .. L - 1``.
        keys: Key states (kv_heads, L, d) (post-RoPE, as cached).
        scale: The attention scale (``head_dim ** -0.5``).

    Returns:
        Attention weights (heads, S, L); each row sums to 1.
    """
    heads, span, _ = q.shape
    kv_heads, length, _ = keys.shape
    k = keys.float().repeat_interleave(heads // kv_heads, dim=0)
    logits = torch.matmul(q.float(), k.transpose(1, 2)) * scale
    query_pos = torch.arange(length - span, length, device=q.device)[:, None]
    future = torch.arange(length, device=q.device)[None, :] > query_pos
    logits.masked_fill_(future, float("-inf"))
    return torch.softmax(logits, dim=-1)


@dataclass
class SpanAttention:
    """The attention of a query span over everything before and in it.

    Attributes:
        scores: s(t) for every position t of prefix + span: the sum over the chosen layers
            and all heads of the mean over span tokens of the attention to t (fp32).
        rows: Per chosen layer, the rows (heads, S, L), only when asked to keep them.
    """

    scores: torch.Tensor
    rows: dict[int, torch.Tensor] = field(default_factory=dict)


def span_attention(model: Any, cache: DynamicCache, span_ids: Sequence[int],
                   layers: Sequence[int], *, keep_rows: bool = False) -> SpanAttention:
    """Run ``span_ids`` after the cached prefix and read the span's attention rows.

    The cache is restored to its prefix afterwards, so the same cache serves the next
    span (the "N/A" calibration pass).

    Args:
        model: The model that filled ``cache`` (any attention implementation).
        cache: A prefix cache from :func:`prefill` covering at least ``max(layers)``.
        span_ids: Token ids of the span (at least one).
        layers: Decoder layer indices to sum over.
        keep_rows: Also return every chosen layer's rows (for tests and inspection).
    """
    if not span_ids:
        raise ValueError("span_ids is empty; the query span needs at least one token")
    chosen = sorted(set(layers))
    if not chosen:
        raise ValueError("layers is empty; choose at least one decoder layer")
    all_layers = decoder_layers(model)
    if chosen[0] < 0 or chosen[-1] >= len(all_layers):
        raise ValueError(f"layer indices must lie in 0..{len(all_layers) - 1}, got {chosen}")
    prefix_len = cache.get_seq_length()
    device = next(model.parameters()).device
    total = torch.zeros(prefix_len + len(span_ids), dtype=torch.float32, device=device)
    kept: dict[int, torch.Tensor] = {}

    def make_hook(index: int) -> Any:
        def hook(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
            q = _span_queries(module, kwargs)[0]
            keys = cache.layers[module.layer_idx].keys[0]
            rows = query_rows(q, keys, float(module.scaling))
            total.add_(rows.sum(dim=0).mean(dim=0))
            if keep_rows:
                kept[index] = rows.cpu()
        return hook

    handles = [all_layers[i].self_attn.register_forward_hook(make_hook(i), with_kwargs=True)
               for i in chosen]
    try:
        with torch.inference_mode():
            _run(model, span_ids, cache, chosen[-1])
    finally:
        for handle in handles:
            handle.remove()
        reset_cache(cache, prefix_len)
    return SpanAttention(total.cpu(), kept)
