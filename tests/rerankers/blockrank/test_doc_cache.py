"""The document-KV cache: LRU eviction by bytes, exact keys, and BlockRank with cache hits —
identical scores, and a second query that computes only its own block."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_lm import tiny_lm  # noqa: E402

from pursuit.indexes.records import Doc  # noqa: E402
from pursuit.rerankers.blockrank.doc_cache import BlockKV, DocKVCache, kv_key  # noqa: E402
from pursuit.rerankers.blockrank.reranker import BlockRankReranker  # noqa: E402
from pursuit.retrievers.lm.causal import wrap_causal_lm  # noqa: E402

DOCS = [Doc("d1", "The moon pulls the ocean and makes the tide.", "Tides"),
        Doc("d2", "Lava flows from a volcano during an eruption."),
        Doc("d3", "A python is a large snake; Python code is read often.", "Snakes")]


def entry(tokens: int) -> BlockKV:
    """One layer of float32 keys and values: 2 heads x tokens x 4 dims x 2 tensors x 4 bytes."""
    return BlockKV(((torch.zeros(2, tokens, 4), torch.ones(2, tokens, 4)),))


def test_entry_size_and_lru_eviction_by_bytes() -> None:
    assert entry(10).nbytes == 2 * 10 * 4 * 4 * 2 and entry(10).tokens == 10
    cache = DocKVCache(max_bytes=3 * 640)            # room for three 10-token entries
    for name in "abc":
        cache.put(name, entry(10))
    assert cache.bytes == 1920 and len(cache) == 3
    assert cache.get("a") is not None                 # "a" is now the most recent
    cache.put("d", entry(10))                         # evicts "b", the least recent
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    cache.put("e", entry(20))                         # 1280 bytes: evicts "c" and "a"
    assert [k for k in "abcde" if k in cache] == ["d", "e"] and cache.bytes == 1920
    assert cache.stats.evictions == 3 and cache.stats.hits == 1
    assert cache.get("zzz") is None and cache.stats.misses == 1
    cache.put("huge", entry(100))                     # larger than the budget: not stored
    assert "huge" not in cache and cache.bytes == 1920
    cache.put("d", entry(5))                          # replacing re-counts the bytes
    assert cache.bytes == 1280 + 320
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        DocKVCache(-1)


def test_key_covers_model_dtype_layer_instruction_and_block() -> None:
    base = kv_key("m", "torch.bfloat16", 12, [1, 2], [3, 4])
    assert base == kv_key("m", "torch.bfloat16", 12, [1, 2], [3, 4]) and len(base) == 64
    others = {kv_key("n", "torch.bfloat16", 12, [1, 2], [3, 4]),
              kv_key("m", "torch.float32", 12, [1, 2], [3, 4]),
              kv_key("m", "torch.bfloat16", 11, [1, 2], [3, 4]),
              kv_key("m", "torch.bfloat16", 12, [1], [2, 3, 4]),
              kv_key("m", "torch.bfloat16", 12, [1, 2], [3, 4, 5])}
    assert base not in others and len(others) == 5


@pytest.fixture(scope="module")
def lm():  # type: ignore[no-untyped-def]
    tiny = tiny_lm(layers=3, dtype=torch.bfloat16)
    return wrap_causal_lm(tiny.model, tiny.tokenizer, "tiny-bf16")


def test_cache_hits_give_identical_scores_and_skip_document_work(lm) -> None:
    r = BlockRankReranker(lm, layer=1, batch_size=2)
    cold = r.score("what causes tides?", DOCS)
    doc_tokens = r.stats.doc_tokens
    assert r.stats.cache_hits == 0 and doc_tokens > 0
    warm = r.score("what causes tides?", DOCS)
    assert warm.tobytes() == cold.tobytes()           # bit-identical
    assert (r.stats.doc_tokens, r.stats.cache_hits) == (0, 3)
    # a second query over the same documents computes only its own block
    other = r.score("where does lava come from?", DOCS[::-1])
    assert (r.stats.doc_tokens, r.stats.cache_hits) == (0, 3)
    q_tokens = r.stats.query_tokens
    fresh = BlockRankReranker(lm, layer=1, batch_size=2)
    np.testing.assert_array_equal(fresh.score("where does lava come from?", DOCS[::-1]), other)
    assert fresh.stats.doc_tokens == doc_tokens and fresh.stats.query_tokens == q_tokens
    # one new document: only its block is computed
    extra = Doc("d4", "The ocean tide.")
    r.score("what causes tides?", [*DOCS, extra])
    assert r.stats.cache_hits == 3
    assert 0 < r.stats.doc_tokens < doc_tokens / 2
    # instruction + 4 documents, all kept within the default budget
    assert len(r.cache) == 5 and r.cache.bytes == sum(
        r.cache.get(k).nbytes for k in list(r.cache._entries))  # type: ignore[union-attr]


def test_cache_disabled_and_budget_respected(lm) -> None:
    off = BlockRankReranker(lm, layer=1, cache_bytes=0)
    off.score("tides", DOCS)
    want = off.score("tides", DOCS)
    assert off.stats.cache_hits == 0 and len(off.cache) == 0
    small = BlockRankReranker(lm, layer=1, cache_bytes=40_000)  # everything takes 51,456
    small.score("tides", DOCS)
    assert 0 < small.cache.bytes <= 40_000 and small.cache.stats.evictions == 1
    assert small.score("tides", DOCS).tobytes() == want.tobytes()
