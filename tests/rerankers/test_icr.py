"""ICR: calibration, the 2-sigma filter, prompt order, strict rankings, and a real-model check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_lm import tiny_lm

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc, Hit, Query, Ranking
from pursuit.rerankers.base import NeedsFirstStageError
from pursuit.rerankers.icr import ICRReranker, calibrated_scores, resolve_layers
from pursuit.retrievers.lm.causal import CausalLM, wrap_causal_lm

#: SciFact test queries whose relevant document BM25 ranks 3rd (query 3) and 4th (query 54).
SCIFACT_QUERIES = ("3", "54")
DOCS = [Doc("tide", "The moon pulls the ocean and makes the tide.", title="Tides"),
        Doc("lava", "Lava flows from a volcano during an eruption.", title="Volcano"),
        Doc("snake", "A python is a large snake; Python code is read often.", title="Python")]


@pytest.fixture(scope="module")
def lm() -> CausalLM:
    tiny = tiny_lm(layers=3, seed=2, attn_implementation="eager")
    return wrap_causal_lm(tiny.model, tiny.tokenizer, "tiny")


def first_stage(query: Query, docs: Sequence[Doc]) -> Ranking:
    return Ranking.from_scores(query, [(d.id, 10.0 - i) for i, d in enumerate(docs)],
                               pipeline="bm25", index="idx",
                               docs={d.id: d for d in docs})


def test_calibration_and_the_two_sigma_filter_on_a_hand_built_tensor() -> None:
    s_query = torch.tensor([5.0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -9, 2, 2, 7, 3])
    s_na = torch.tensor([5.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0])
    # c = s_query - s_na. Doc 0 = ten 1s and one -9: mean 0.091, std 2.875, threshold -5.66,
    # so the -9 is dropped and the score is 10. Doc 1 = [1, 1, 6]: mean 2.667, std 2.357,
    # threshold -2.05, all kept: 8. Tokens 0 and 15 belong to no document.
    scores = calibrated_scores(s_query, s_na, [(1, 12), (12, 15)])
    assert scores == pytest.approx([10.0, 8.0])
    # Tokens all equal to the mean fall on the threshold (<=) and are dropped.
    assert calibrated_scores(torch.ones(3), torch.zeros(3), [(0, 3), (3, 3)]) == [0.0, 0.0]


def test_resolve_layers() -> None:
    assert resolve_layers("all", 4) == (0, 1, 2, 3)
    assert resolve_layers("middle", 24) == tuple(range(8, 16))
    assert resolve_layers("middle", 28) == tuple(range(9, 19))
    assert resolve_layers("middle", 3) == (1,)
    assert resolve_layers("2,0,-1", 4) == (0, 2, 3)
    assert resolve_layers([1, 1], 4) == (1,)
    with pytest.raises(PursuitError, match=r"layers='9' is not a layer set; use 'all', 'middle' "
                                           r"or indices in 0..3 \(e.g. layers='8,9,10'\)"):
        resolve_layers("9", 4)
    with pytest.raises(PursuitError, match="layers='top' is not a layer set"):
        resolve_layers("top", 4)


def test_top_document_goes_last_in_the_prompt(lm: CausalLM) -> None:
    seen: list[list[str]] = []

    class Spy(ICRReranker):
        def prompt_scores(self, query: str, docs: Sequence[Doc]) -> list[float]:
            seen.append([d.id for d in docs])
            return super().prompt_scores(query, docs)

    reranker = Spy(lm, layers="all")
    query = Query("q1", "what causes tides?")
    reranker.transform(query, first_stage(query, DOCS))
    assert seen == [["snake", "lava", "tide"]]
    prompt = reranker.prompt(query.text, DOCS[::-1])
    start, end = prompt.doc_spans[-1]
    assert lm.tokenizer.decode(list(prompt.prompt.input_ids[start:end])).startswith(
        "[3] Tides\nThe moon pulls the ocean")


def test_scores_equal_a_reference_from_two_full_eager_forwards(lm: CausalLM) -> None:
    reranker = ICRReranker(lm, layers="all")
    query = Query("q1", "what causes tides?")
    ranking = reranker.transform(query, first_stage(query, DOCS))

    def eager_s(text: str) -> tuple[torch.Tensor, int, tuple[tuple[int, int], ...]]:
        prompt = reranker.prompt(text, DOCS[::-1])
        with torch.no_grad():
            out = lm.model(torch.tensor([list(prompt.prompt.input_ids)]), output_attentions=True)
        n = prompt.query_start
        s = sum(a[0, :, n:, :n].sum(dim=0).mean(dim=0) for a in out.attentions)
        return torch.as_tensor(s), n, prompt.doc_spans

    s_q, n, spans = eager_s(query.text)
    s_na, _, _ = eager_s("N/A")
    expected = dict(zip(["snake", "lava", "tide"], calibrated_scores(s_q, s_na, spans),
                        strict=True))
    got = ranking.scores()
    assert sorted(got) == sorted(expected)
    for doc_id, score in got.items():
        assert score == pytest.approx(expected[doc_id], abs=1e-5)
    scores = [h.score for h in ranking.hits]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False))
    assert ranking.provenance.pipeline == "icr" and ranking.provenance.index == "idx"
    assert [h.doc for h in ranking.hits] == [{d.id: d for d in DOCS}[i] for i in ranking.doc_ids()]


def test_equal_scores_become_strictly_decreasing_in_first_stage_order(lm: CausalLM) -> None:
    class Flat(ICRReranker):
        def prompt_scores(self, query: str, docs: Sequence[Doc]) -> list[float]:
            return [1.0] * len(docs)

    query = Query("q", "tides")
    ranking = Flat(lm).transform(query, first_stage(query, DOCS))
    assert ranking.doc_ids() == ["tide", "lava", "snake"]
    scores = [h.score for h in ranking.hits]
    assert scores[0] == 1.0 and scores[0] > scores[1] > scores[2]


def test_stage_contract_errors_and_names(lm: CausalLM) -> None:
    reranker = ICRReranker(lm)
    with pytest.raises(NeedsFirstStageError, match=r"put a first stage before it, e.g. bm25%100 >> icr"):
        reranker.search("tides")
    empty = reranker.transform(Query("q", "t"), Ranking.from_scores(Query("q", "t"), [],
                                                                     pipeline="bm25"))
    assert len(empty) == 0 and empty.provenance.pipeline == "icr"
    bare = Ranking(Query("q", "t"), (Hit("tide", 1.0),), first_stage(Query("q", "t"), DOCS).provenance)
    with pytest.raises(PursuitError, match="'icr' needs document text"):
        reranker.transform(Query("q", "t"), bare)
    with pytest.raises(PursuitError, match="instruction='chat' is not known; use one of "
                                           "'retrieval', 'qa'"):
        ICRReranker(lm, instruction="chat")
    with pytest.raises(ValueError, match="icr has no option 'layer'; options: model, dtype"):
        ICRReranker.from_options(None, layer="all")
    assert ICRReranker(lm, layers="all", options={"layers": "all"}).name == "icr(layers='all')"
    qa = ICRReranker(lm, instruction="qa").prompt("why?", DOCS)
    assert "Please answer the following question based on the information" in qa.prompt.text


# ----------------------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def scifact_top10(shared_data: Path) -> dict[str, tuple[Ranking, dict[str, int]]]:
    """BM25 top-10 (with documents) and qrels of a few SciFact test queries."""
    from pursuit.indexes.bm25 import BM25Index
    from pursuit.indexes.datasets.beir import read_beir

    ds = read_beir(shared_data / "beir-scifact", "test")
    by_id = {d.id: d for d in ds.corpus}
    index = BM25Index.build([d.contents() for d in ds.corpus], np.arange(len(ds.corpus)))
    queries = [q for q in ds.queries if q.id in SCIFACT_QUERIES]
    rows, scores = index.search([q.text for q in queries], k=10)
    return {q.id: (Ranking.from_scores(q, [(ds.corpus[r].id, float(s)) for r, s in
                                           zip(rows[i], scores[i], strict=True)],
                                       pipeline="bm25", docs=by_id), dict(ds.qrels[q.id]))
            for i, q in enumerate(queries)}


@pytest.mark.model
@pytest.mark.data
def test_packaged_qwen_reranks_scifact_bm25_top10(
        scifact_top10: dict[str, tuple[Ranking, dict[str, int]]]) -> None:
    # The packaged 0.5B, middle third of the layers, in float32: its orders are the same on
    # every CPU (bf16 is emulated on AVX2-only CPUs and rounds differently where native,
    # which swapped two documents of query 54 between machines).
    icr = ICRReranker.from_options(None, dtype="float32", device="cpu")
    assert icr.name == "icr(device='cpu', dtype='float32')"
    assert icr.layers == tuple(range(8, 16))
    got = {qid: icr.transform(bm25.query, bm25) for qid, (bm25, _) in scifact_top10.items()}
    for qid, ranking in got.items():
        bm25, _ = scifact_top10[qid]
        assert ranking.provenance.pipeline == icr.name
        assert sorted(ranking.doc_ids()) == sorted(bm25.doc_ids())
        scores = [h.score for h in ranking.hits]
        assert all(a > b for a, b in zip(scores, scores[1:], strict=False))
    # Computed once in float32 (AVX2 CPU, torch 2.13) and pinned: the full order for query
    # 54, whose neighbouring scores differ by 3% or more, far above float32's differences
    # between CPUs (its relevant document rises from 4th under BM25 to 3rd) ...
    assert got["54"].doc_ids() == ["1590744", "3973445", "49556906", "24721866", "9899292",
                                   "3419709", "23974474", "1800734", "9752604", "22036571"]
    bm25_54 = scifact_top10["54"][0].doc_ids()
    assert bm25_54.index("49556906") == 3 and got["54"].doc_ids().index("49556906") == 2
    # ... and for query 3 the 0.5B model puts the BM25 bottom three on top (a weak reranker:
    # its relevant document falls from 3rd to 6th; BENCHMARKS.md measures the 1.5B as better).
    # The first two of them are 0.1% apart, so only the set of the three is pinned.
    assert set(got["3"].doc_ids()[:3]) == set(scifact_top10["3"][0].doc_ids()[-3:])
    assert got["3"].doc_ids().index("14717500") == 5
