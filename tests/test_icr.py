"""ICR: calibration, the 2-sigma filter, prompt order, strict rankings, and a real-model check."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from tiny_lm import tiny_lm

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc, Hit, Query, Ranking
from pursuit.rerankers.base import NeedsFirstStageError
from pursuit.rerankers.icr import ICRReranker, calibrated_scores, make_icr, resolve_layers
from pursuit.retrievers.llm import CausalLM, wrap_causal_lm

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
        make_icr(None, layer="all")
    assert ICRReranker(lm, layers="all", options={"layers": "all"}).name == "icr(layers='all')"
    qa = ICRReranker(lm, instruction="qa").prompt("why?", DOCS)
    assert "Please answer the following question based on the information" in qa.prompt.text
