"""Keys and values of recent prompts, reused when a new prompt starts the same way.

A chat that goes on turn after turn sends the whole conversation again each time; a
structured request that is retried sends its first prompt and reply again with the error
appended. Without a cache the in-process model prefills every token of that again. A
:class:`PrefixKVCache` keeps the key/value cache of each recent generation (its prompt and
the tokens it generated) under the exact token ids it holds; a new prompt takes a copy of
the longest matching token prefix and prefills only the rest.

Matching is on token ids, so a prefix is reused only where the new prompt tokenises
exactly as the cached one did. Entries are evicted least recently used beyond a byte
budget; an entry whose tokens begin another's is dropped as superseded. Only caches of
plain full-attention layers are kept (a sliding-window layer holds no cuttable prefix).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

__all__ = ["PrefixKVCache", "PrefixStats"]


@dataclass
class PrefixStats:
    """What the cache saved: prompt tokens seen and tokens taken from the cache."""

    prompt_tokens: int = 0
    reused_tokens: int = 0
    hits: int = 0
    misses: int = 0


def _layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Each layer's keys and values, or ``None`` when a layer is not a plain full-attention
    cache (a sliding window or linear attention keeps no prefix that could be cut)."""
    out = []
    for layer in cache.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if type(layer) is not DynamicLayer or not isinstance(keys, torch.Tensor) \
                or not isinstance(values, torch.Tensor):
            return None
        out.append((keys, values))
    return out


def _nbytes(cache: DynamicCache) -> int:
    return sum(k.nbytes + v.nbytes for k, v in _layers(cache) or [])


def _common(a: torch.Tensor, b: torch.Tensor) -> int:
    """Length of the common prefix of two 1-d id tensors."""
    n = min(a.numel(), b.numel())
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if differ.numel() else n


class PrefixKVCache:
    """Recent generations' key/value caches of one model, found by shared token prefix.

    Args:
        max_bytes: Budget for all entries' tensors; least recently used go first.
        min_tokens: Shorter shared prefixes are not worth a copy (a chat template's header).

    Not thread-safe by itself: :class:`~pursuit.agent.llm.local.InProcessLLM` calls it under
    the model's generation lock.
    """

    def __init__(self, max_bytes: int = 512 * 2**20, min_tokens: int = 32) -> None:
        self.max_bytes, self.min_tokens = max_bytes, min_tokens
        self._entries: OrderedDict[int, tuple[torch.Tensor, DynamicCache]] = OrderedDict()
        self._next = 0
        self.stats = PrefixStats()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held by all entries."""
        return sum(_nbytes(cache) for _, cache in self._entries.values())

    def take(self, ids: torch.Tensor) -> DynamicCache:
        """A fresh cache for prompt ``ids`` (1-d), holding the longest cached prefix of it.

        At least the prompt's last token is left to compute, since generation needs one
        input position to predict from. The returned cache is a copy: generating into it
        leaves the stored entries as they were.
        """
        ids = ids.reshape(-1).cpu()
        best, length = None, 0
        for key, (held, _) in self._entries.items():
            n = min(_common(held, ids), ids.numel() - 1)  # put() keeps ids as long as the cache
            if n > length:
                best, length = key, n
        self.stats.prompt_tokens += ids.numel()
        if best is None or length < self.min_tokens:
            self.stats.misses += 1
            return DynamicCache()
        self._entries.move_to_end(best)
        self.stats.hits += 1
        self.stats.reused_tokens += length
        layers = _layers(self._entries[best][1]) or []
        return DynamicCache(ddp_cache_data=[(k[:, :, :length].clone(), v[:, :, :length].clone())
                                            for k, v in layers])

    def put(self, ids: torch.Tensor, cache: DynamicCache) -> None:
        """Keep ``cache`` as the keys and values of token ``ids`` (the cache may hold fewer
        positions than ``ids``: the last generated token is never fed back)."""
        held = cache.get_seq_length()
        if held < self.min_tokens or _layers(cache) is None:
            return
        ids = ids.reshape(-1)[:held].cpu()
        for key in [k for k, (other, _) in self._entries.items()
                    if other.numel() <= held and _common(other, ids) == other.numel()]:
            del self._entries[key]
        self._entries[self._next] = (ids, cache)
        self._next += 1
        size = self.nbytes
        while size > self.max_bytes and self._entries:
            _, (_, dropped) = self._entries.popitem(last=False)
            size -= _nbytes(dropped)

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
