"""The contract every reranker passes, run on tiny random-weight models.

To put a reranker under the contract, add one line to :data:`RERANKERS`: an id and a
function ``(lm, store) -> Stage`` that builds it over the tiny LM (a
:class:`~pursuit.retrievers.lm.causal.CausalLM` wrapping ``tests/tiny_lm.py``, float32, eager
attention) and the test's document store.

The contract: given candidates, the output holds exactly the candidate ids, once each, with
strictly decreasing scores, the same on a second call; ``bm25 % k >> reranker % n`` returns
``n`` hits; a reranker without a first stage raises an error that names the fix; no
candidates give an empty ranking; ``batch`` equals ``transform`` one query at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_bm25 import bm25_over, store_with
from tiny_lm import tiny_lm

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.rerankers.base import strict_ranking
from pursuit.rerankers.blockrank.reranker import BlockRankReranker
from pursuit.rerankers.icr import ICRReranker
from pursuit.rerankers.listwise import ListwiseReranker
from pursuit.rerankers.ql import QLReranker
from pursuit.retrievers.bm25 import BM25Retriever
from pursuit.retrievers.lm.causal import CausalLM, wrap_causal_lm
from pursuit.retrievers.stage import Stage

Factory = Callable[[CausalLM, DocStore], Stage]

# One line per reranker: (id, factory).
RERANKERS: list[tuple[str, Factory]] = [
    ("ql", lambda lm, store: QLReranker(lm, store=store, batch_size=3)),
    ("listwise", lambda lm, store: ListwiseReranker(lm, store=store, window=4, step=2,
                                                    max_new_tokens=12)),
    ("icr", lambda lm, store: ICRReranker(lm, store=store, layers="all")),
    ("blockrank", lambda lm, store: BlockRankReranker(lm, store=store, layer=1)),
]

DOCS = [
    Doc("moon", "The moon pulls the ocean and makes the tide.", title="Tides"),
    Doc("lava", "Lava flows from a volcano during an eruption."),
    Doc("snake", "A python is a large snake."),
    Doc("code", "Python code is read often."),
    Doc("ocean", "The ocean makes the tide; the moon pulls it."),
    Doc("tide2", "Tide tables: the moon and the tide."),
    Doc("volcano", "A volcano eruption: lava flows."),
]
QUERIES = [Query("q1", "what makes the tide? the moon"), Query("q2", "python snake or code")]


@pytest.fixture(scope="module")
def lm() -> CausalLM:
    t = tiny_lm()
    return wrap_causal_lm(t.model, t.tokenizer, "tiny")


@pytest.fixture
def store(tmp_path: Path) -> DocStore:
    return store_with(DOCS, tmp_path)


@pytest.fixture
def bm25(store: DocStore) -> BM25Retriever:
    return bm25_over(store)


@pytest.fixture(params=RERANKERS, ids=[name for name, _ in RERANKERS])
def reranker(request: pytest.FixtureRequest, lm: CausalLM, store: DocStore) -> Stage:
    factory: Factory = request.param[1]
    return factory(lm, store)


def candidates(query: Query, ids: list[str], *, with_docs: bool = False) -> Ranking:
    """A first-stage ranking of ``ids`` in the given order, tagged with index ``tiny``."""
    docs = {d.id: d for d in DOCS} if with_docs else None
    return Ranking.from_scores(query, [(d, 10.0 - i) for i, d in enumerate(ids)],
                               pipeline="first", index="tiny", docs=docs)


IDS = ["moon", "lava", "snake", "code", "ocean", "tide2"]


def test_output_is_exactly_the_candidates_with_strictly_decreasing_scores(reranker: Stage) -> None:
    r = reranker.transform(QUERIES[0], candidates(QUERIES[0], IDS))
    assert sorted(r.doc_ids()) == sorted(IDS)
    scores = [h.score for h in r]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False))
    assert (r.query, r.provenance.pipeline, r.provenance.index) == (QUERIES[0], reranker.name, "tiny")
    # Text fetched from the store rides along for later stages.
    assert [h.doc.id if h.doc else None for h in r] == r.doc_ids()


def test_deterministic_and_same_with_docs_carried_or_fetched(reranker: Stage) -> None:
    first = reranker.transform(QUERIES[1], candidates(QUERIES[1], IDS))
    second = reranker.transform(QUERIES[1], candidates(QUERIES[1], IDS, with_docs=True))
    assert [(h.doc_id, h.score) for h in first] == [(h.doc_id, h.score) for h in second]


def test_composes_after_a_first_stage(reranker: Stage, bm25: BM25Retriever) -> None:
    pipeline = bm25 % 5 >> reranker % 3
    r = pipeline.search("the moon and the tide")
    first = (bm25 % 5).search("the moon and the tide").doc_ids()
    assert len(r) == 3 and set(r.doc_ids()) <= set(first)
    assert r.provenance.pipeline == f"bm25%5 >> {reranker.name}%3"
    direct = reranker.transform(Query.coerce("the moon and the tide"),
                                (bm25 % 5).search("the moon and the tide"))
    assert r.doc_ids() == direct.doc_ids()[:3]


def test_batch_equals_one_query_at_a_time(reranker: Stage) -> None:
    cands = [candidates(QUERIES[0], IDS), candidates(QUERIES[1], ["code", "snake", "moon"])]
    batched = reranker.batch(QUERIES, cands)
    single = [reranker.transform(q, c) for q, c in zip(QUERIES, cands, strict=True)]
    assert [b.doc_ids() for b in batched] == [s.doc_ids() for s in single]
    for b, s in zip(batched, single, strict=True):
        assert [h.score for h in b] == pytest.approx([h.score for h in s], abs=1e-5)


def test_without_a_first_stage_the_error_says_what_to_put_before_it(reranker: Stage) -> None:
    with pytest.raises(PursuitError, match=r"cannot search on its own; put a first stage "
                       r"before it, e\.g\. bm25%100 >> "):
        reranker.search("tides")
    with pytest.raises(PursuitError, match="put a first stage before it"):
        reranker.batch(["tides"])


def test_no_candidates_give_an_empty_ranking(reranker: Stage) -> None:
    r = reranker.transform(QUERIES[0], candidates(QUERIES[0], []))
    assert (len(r), r.provenance.pipeline, r.provenance.index) == (0, reranker.name, "tiny")


def test_one_candidate_is_returned_as_is(reranker: Stage) -> None:
    r = reranker.transform(QUERIES[0], candidates(QUERIES[0], ["lava"]))
    assert r.doc_ids() == ["lava"]


def test_missing_text_without_a_store_names_the_fix(lm: CausalLM) -> None:
    for _, factory in RERANKERS:
        stage = factory(lm, None)  # type: ignore[arg-type]
        with pytest.raises(PursuitError, match=r"carry none and it was built without a store; "
                           r"pass store=index\.store"):
            stage.transform(QUERIES[0], candidates(QUERIES[0], ["moon", "lava"]))


# The shared helpers of rerankers/base.py ---------------------------------------------
def test_strict_ranking_breaks_ties_in_input_order_visibly_at_float32() -> None:
    q = Query("q", "x")
    r = strict_ranking(q, ["z", "b", "a", "n", "m"], [1.0, 2.0, 1.0, float("nan"), 1.0 + 1e-12],
                       pipeline="t", index="i")
    assert r.doc_ids() == ["b", "m", "z", "a", "n"]  # m first among the float64 near-ties
    s32 = [np.float32(h.score) for h in r]
    assert all(a > b for a, b in zip(s32, s32[1:], strict=False))
    assert (r.hits[0].score, r.hits[1].score) == (2.0, 1.0 + 1e-12)
    assert (r.provenance.pipeline, r.provenance.index) == ("t", "i")
    with pytest.raises(ValueError, match="got 1 scores for 2 documents"):
        strict_ranking(q, ["a", "b"], [1.0], pipeline="t")


def test_cached_lm_loads_each_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import pursuit.rerankers.base as base
    import pursuit.retrievers.lm.causal as llm

    calls: list[tuple[str | None, object]] = []

    def fake_load(model: str | None = None, *, dtype: object = "auto",
                  device: str = "auto", **_: object) -> str:
        calls.append((model, dtype))
        return f"lm{len(calls)}"

    monkeypatch.setattr(llm, "load_causal_lm", fake_load)
    monkeypatch.setattr(llm, "_SHARED", {})
    # The default, its packaged name and its upstream hub id are one model; "auto" is
    # loaded as the dtype it resolves to here, and naming that dtype is the same copy.
    auto = llm.resolve_dtype("auto", llm.resolve_device("auto"))
    other = "bfloat16" if auto == torch.float32 else "float32"
    first = base.cached_lm(None)
    assert base.cached_lm("qwen2.5-coder-0.5b") is first
    assert base.cached_lm("Qwen/Qwen2.5-Coder-0.5B-Instruct") is first
    assert base.cached_lm(None, dtype=str(auto).removeprefix("torch.")) is first
    assert base.cached_lm(None, dtype=other) == "lm2"
    assert calls == [(None, auto), (None, getattr(torch, other))]
    # The agent's chat model is the same copy as the rerankers'.
    assert llm.shared_causal_lm("qwen2.5-coder-0.5b") is first
