"""QLReranker: scores equal a direct unbatched log-likelihood, padding and batching change
nothing, the shared-prefix path equals the plain path, truncation cuts documents only; and
on the packaged 0.5B model, a SciFact query's relevant abstract wins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_lm import tiny_lm

from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.rerankers.base import NeedsFirstStageError
from pursuit.rerankers.prompting import truncate_tokens
from pursuit.rerankers.ql import INSTRUCTION, QLReranker
from pursuit.retrievers.lm.causal import CausalLM, wrap_causal_lm

DOCS = [
    Doc("a", "The moon pulls the ocean and makes the tide.", title="Tides"),
    Doc("b", "Lava flows."),
    Doc("c", "A python is a large snake; Python code is read often. " * 3),
    Doc("d", "Here are some paragraphs about the query and the answer."),
    Doc("e", "The ocean."),
]
QUERIES = [Query("q1", "what causes tides?"), Query("q2", "lava from a volcano"),
           Query("q3", "python")]


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def lm(request: pytest.FixtureRequest) -> CausalLM:
    t = tiny_lm(attn_implementation=request.param)
    return wrap_causal_lm(t.model, t.tokenizer, "tiny")


def direct_score(lm: CausalLM, doc: Doc, query: str) -> float:
    """Mean log P(query tokens | prompt) from one unpadded forward, written out in full."""
    tok = lm.tokenizer
    user = f"Passage: {doc.contents()}\n{INSTRUCTION}"
    prompt = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                     add_generation_prompt=True) + "Question:"
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    q_ids = tok(" " + query, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm.model(torch.tensor([p_ids + q_ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return float(np.mean([logp[len(p_ids) - 1 + j, t].item() for j, t in enumerate(q_ids)]))


def test_score_equals_direct_mean_logprob(lm: CausalLM) -> None:
    ql = QLReranker(lm, batch_size=3)  # rows of different lengths share batches: padding
    for q in QUERIES:
        got = ql.score_docs(q, DOCS)
        want = [direct_score(lm, d, q.text) for d in DOCS]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # The prompt is the chat template around the passage, then the answer label.
    assert ql.doc_prompt(DOCS[1]) == ("<|im_start|>user\nPassage: Lava flows.\n"
                                      f"{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n"
                                      "Question:")


def test_batch_size_and_padding_do_not_change_scores(lm: CausalLM) -> None:
    base = QLReranker(lm, batch_size=1).score_docs(QUERIES[0], DOCS)
    for size in (2, 4, 16):
        np.testing.assert_allclose(QLReranker(lm, batch_size=size).score_docs(QUERIES[0], DOCS),
                                   base, atol=1e-5, rtol=0)


def test_plain_path_scores_mixed_query_lengths_in_one_batch(lm: CausalLM) -> None:
    ql = QLReranker(lm, batch_size=8)
    pairs = [(ql._ids(ql.doc_prompt(d)), ql.query_ids(q)) for d in DOCS[:3] for q in QUERIES]
    want = [direct_score(lm, d, q.text) for d in DOCS[:3] for q in QUERIES]
    np.testing.assert_allclose(ql.score_pairs(pairs), want, atol=1e-5, rtol=0)


def test_shared_prefix_path_equals_plain_path(lm: CausalLM) -> None:
    # Documents a and c serve all three queries, b two, so prefixes are shared; batch_size 2
    # splits both the prefills and the query rows into several chunks.
    cands = [Ranking.from_scores(q, [(i, 1.0) for i in ids], pipeline="first", index="x")
             for q, ids in zip(QUERIES, [["a", "b", "c"], ["c", "a", "b", "d"], ["a", "c", "e"]],
                               strict=True)]
    docs = {d.id: d for d in DOCS}
    cands = [Ranking.from_scores(c.query, [(h.doc_id, h.score) for h in c], pipeline="first",
                                 index="x", docs=docs) for c in cands]
    shared = QLReranker(lm, batch_size=2).batch(QUERIES, cands)
    plain = QLReranker(lm, batch_size=2, share_prefixes=False).batch(QUERIES, cands)
    for s, p, c in zip(shared, plain, cands, strict=True):
        assert s.doc_ids() == p.doc_ids()
        np.testing.assert_allclose([h.score for h in s], [h.score for h in p], atol=1e-5)
        want = {d: direct_score(lm, docs[d], c.query.text) for d in c.doc_ids()}
        np.testing.assert_allclose([h.score for h in s], [want[h.doc_id] for h in s], atol=1e-5)
        assert s.provenance.index == "x"


def test_truncation_cuts_the_document_and_keeps_the_query(lm: CausalLM) -> None:
    tok = lm.tokenizer
    long_text = "The moon pulls the ocean and makes the tide. " * 20
    cut = truncate_tokens(tok, long_text, 7)
    assert len(tok(cut)["input_ids"]) == 7 and long_text.startswith(cut)
    assert truncate_tokens(tok, "Lava flows.", 7) == "Lava flows."
    # Two documents that differ only after their first 7 tokens score the same.
    ql = QLReranker(lm, max_doc_tokens=7)
    one, two = Doc("x", long_text), Doc("y", long_text.replace("tide. The", "tide. A"))
    a, b = ql.score_docs(QUERIES[0], [one, two])
    assert a == pytest.approx(b, abs=1e-6)
    assert ql.doc_prompt(one).count("moon") == 1
    long_query = Query("long", "what causes tides? " * 10)
    assert len(ql.query_ids(long_query)) == len(tok(" " + long_query.text)["input_ids"])


def test_identical_documents_get_strictly_decreasing_scores_in_first_stage_order(
        lm: CausalLM) -> None:
    twins = {i: Doc(i, "The moon pulls the ocean.") for i in ("z", "m", "a")}
    cands = Ranking.from_scores(QUERIES[0], [("z", 3.0), ("m", 2.0), ("a", 1.0)],
                                pipeline="first", docs=twins)
    r = QLReranker(lm).transform(QUERIES[0], cands)
    assert r.doc_ids() == ["z", "m", "a"]
    assert r.hits[0].score > r.hits[1].score > r.hits[2].score
    assert np.float32(r.hits[0].score) > np.float32(r.hits[1].score)


def test_names_options_and_errors(lm: CausalLM) -> None:
    assert QLReranker(lm).name == "ql"
    assert QLReranker(lm, options={"max_doc_tokens": 100}).name == "ql(max_doc_tokens=100)"
    with pytest.raises(ValueError, match="ql has no option 'layers'; options: model, dtype"):
        QLReranker.from_options(None, layers="middle")
    with pytest.raises(NeedsFirstStageError, match=r"e\.g\. bm25%100 >> ql "):
        QLReranker(lm).batch(["tides"])
    with pytest.raises(ValueError, match="max_doc_tokens and batch_size must be >= 1"):
        QLReranker(lm, batch_size=0)


@pytest.mark.model
@pytest.mark.data
def test_packaged_05b_puts_the_relevant_abstract_first(shared_data: Path) -> None:
    from pursuit.indexes.datasets.beir import read_beir

    ds = read_beir(shared_data / "beir-scifact")
    corpus = {d.id: d for d in ds.corpus}
    # float32: the same scores on every CPU (bf16 is emulated, and slow, on AVX2-only CPUs);
    # each abstract's first 128 tokens keep the test fast and still tell the claims apart.
    ql = QLReranker.from_options(None, dtype="float32", device="cpu", max_doc_tokens=128)
    assert ql.name == "ql(device='cpu', dtype='float32', max_doc_tokens=128)"
    # Two test claims, each with its judged abstract among four distinct abstracts judged
    # for other claims.
    picks = [q for q in ds.queries if len(ds.qrels[q.id]) == 1][:2]
    others = list(dict.fromkeys(d for q in ds.queries[10:16] for d in ds.qrels[q.id]))
    for q in picks:
        rel = next(iter(ds.qrels[q.id]))
        ids = [d for d in others if d != rel][:4] + [rel]  # the relevant one placed last
        cands = Ranking.from_scores(q, [(d, 5.0 - i) for i, d in enumerate(ids)],
                                    pipeline="first", docs=corpus)
        r = ql.transform(q, cands)
        assert r.doc_ids()[0] == rel, (q.text, r.doc_ids())
        assert all(-8.0 < h.score < 0.0 for h in r)
