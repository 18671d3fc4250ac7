"""A byte-budgeted LRU cache of per-document keys and values (BlockRank's document-KV cache).

BlockRank keeps the query out of the instruction block, so a document block's keys and
values at every layer up to the scoring layer depend only on (model, instruction, document
block, scoring layer). :class:`DocKVCache` keeps them across queries: every sub-question of a
session, every refinement after a clarification, reranks its pool for the cost of the query
block alone. Entries are evicted least-recently-used first once their tensors pass
``max_bytes``.

Example:
    >>> cache = DocKVCache(256 * 2**20)
    >>> key = kv_key("qwen2.5-coder-0.5b", "torch.bfloat16", 12, [1, 2], [3, 4])
    >>> cache.get(key) is None
    True
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BlockKV:
    """Keys and values of one block for layers ``0..len(layers)-1``.

    Attributes:
        layers: Per layer ``(keys, values)``, each ``[kv_heads, tokens, head_dim]`` with the
            rotary embedding already applied to the keys.
    """

    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    @property
    def tokens(self) -> int:
        """Number of tokens in the block."""
        return int(self.layers[0][0].shape[1]) if self.layers else 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size()
                   for k, v in self.layers)


def kv_key(model_id: str, dtype: str, layer: int, instruction: Sequence[int],
           block: Sequence[int]) -> str:
    """The cache key of a block: a sha256 over everything its keys and values depend on.

    Args:
        model_id: The model's canonical name (two different models must not share a name).
        dtype: The compute dtype, e.g. ``"torch.bfloat16"``.
        layer: The deepest layer whose keys and values are stored.
        instruction: Token ids of the instruction block.
        block: Token ids of the document block (label, truncated text and wrapper, so the
            token budget is part of the key).
    """
    h = hashlib.sha256()
    for part in (model_id, dtype, str(layer), ",".join(map(str, instruction)),
                 ",".join(map(str, block))):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


@dataclass
class CacheStats:
    """Counters of a :class:`DocKVCache` since it was made."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0


class DocKVCache:
    """Least-recently-used cache of :class:`BlockKV` entries under a byte budget.

    Args:
        max_bytes: Budget for the tensors of all entries; an entry larger than the budget
            is not stored. ``0`` disables caching.

    Thread-safe: one cache may serve the rerankers of several agent sessions.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.stats = CacheStats()
        self._entries: OrderedDict[str, BlockKV] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> BlockKV | None:
        """The entry for ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry

    def put(self, key: str, entry: BlockKV) -> None:
        """Store ``entry``, evicting the least recently used entries to stay in budget."""
        size = entry.nbytes
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            if size > self.max_bytes:
                return
            self._entries[key] = entry
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= evicted.nbytes
                self.stats.evictions += 1

    def clear(self) -> None:
        """Drop every entry (the counters are kept)."""
        with self._lock:
            self._entries.clear()
            self.bytes = 0
