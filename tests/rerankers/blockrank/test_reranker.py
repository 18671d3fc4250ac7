"""BlockRank on tiny random-weight models: exact against a per-block reference built from the
stock model, batched path = mask path, exact position ids and mask, permutation invariance,
truncation that keeps the query, and the packaged 0.5B on SciFact (``model`` marker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_lm import tiny_lm  # noqa: E402
from transformers import DynamicCache

from pursuit.indexes.errors import PursuitError  # noqa: E402
from pursuit.indexes.records import Doc, Query, Ranking  # noqa: E402
from pursuit.rerankers.blockrank.blocks import BlockLayout, build_layout, doc_block_ids  # noqa: E402
from pursuit.rerankers.blockrank.forward import BlockForward, score_layout  # noqa: E402
from pursuit.rerankers.blockrank.reranker import (  # noqa: E402
    BlockRankReranker,
    resolve_layer,
)
from pursuit.retrievers.lm.causal import wrap_causal_lm  # noqa: E402

DOCS = [Doc("d1", "The moon pulls the ocean and makes the tide.", "Tides"),
        Doc("d2", "Lava flows from a volcano during an eruption."),
        Doc("d3", "A python is a large snake; Python code is read often.", "Snakes"),
        Doc("d4", "The ocean tide.")]
QUERY = "what causes tides?"


@pytest.fixture(scope="module")
def lm():  # type: ignore[no-untyped-def]
    tiny = tiny_lm(layers=3, attn_implementation="eager")
    return wrap_causal_lm(tiny.model, tiny.tokenizer, "tiny-3")


def reference(lm, layout: BlockLayout, layer: int):  # type: ignore[no-untyped-def]
    """Scores from the stock model: one forward per document with explicit positions, then
    the query block over a cache of all of them, reading eager attention at ``layer``."""
    model, l0 = lm.model, layout.l0
    per_doc = []
    with torch.no_grad():
        for d in layout.docs:
            ids = torch.tensor([list(layout.instruction) + list(d)])
            out = model(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None],
                        use_cache=True)
            per_doc.append(out.past_key_values)
        cache = DynamicCache()
        for i in range(len(model.model.layers)):
            parts = [per_doc[0].layers[i].keys[:, :, :l0]] + [
                p.layers[i].keys[:, :, l0:] for p in per_doc]
            vparts = [per_doc[0].layers[i].values[:, :, :l0]] + [
                p.layers[i].values[:, :, l0:] for p in per_doc]
            cache.update(torch.cat(parts, 2), torch.cat(vparts, 2), i)
        q = torch.tensor([list(layout.query)])
        pos = layout.query_start + torch.arange(q.shape[1])
        out = model(input_ids=q, position_ids=pos[None], cache=cache,
                    output_attentions=True)
    att = out.attentions[layer][0][:, list(layout.signal)]  # [H, S, prefix + Lq]
    lens = [len(d) for d in layout.docs]
    doc_att = att[..., l0:l0 + sum(lens)]
    # softmax over document logits only == full softmax renormalised over document columns
    mass = (doc_att / doc_att.sum(-1, keepdim=True)).mean(dim=(0, 1))
    return torch.stack([s.sum() for s in mass.split(lens)]), per_doc


@pytest.mark.parametrize("path", ["mask", "batched"])
def test_scores_and_kv_equal_per_block_reference(lm, path: str) -> None:
    layout = build_layout(lm, QUERY, DOCS, max_doc_tokens=64, signal_tokens=3)
    engine = BlockForward(lm.model, 1)
    want, per_doc = reference(lm, layout, 1)
    with torch.no_grad():
        run = score_layout(engine, layout, model_id="tiny-3", path=path)
        instr = engine.instruction_kv(layout.instruction, 1)
        kvs = engine.docs_kv(instr, layout.docs, 1, path)
    torch.testing.assert_close(run.scores, want.float(), atol=1e-5, rtol=1e-4)
    assert float(run.scores.sum()) == pytest.approx(1.0, abs=1e-5)
    for kv, ref in zip(kvs, per_doc, strict=True):
        for i in range(2):  # layers 0..l*: keys (rotary applied) and values
            torch.testing.assert_close(kv.layers[i][0], ref.layers[i].keys[0, :, layout.l0:],
                                       atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(kv.layers[i][1], ref.layers[i].values[0, :, layout.l0:],
                                       atol=1e-5, rtol=1e-4)


def test_every_layer_rows_equal_the_reference_at_each_layer(lm) -> None:
    layout = build_layout(lm, QUERY, DOCS, max_doc_tokens=64, signal_tokens=2)
    engine = BlockForward(lm.model, 2)
    with torch.no_grad():
        instr = engine.instruction_kv(layout.instruction, 2)
        docs = engine.docs_kv(instr, layout.docs, 2, "mask")
        rows, _ = engine.query_pass(instr, docs, layout, every_layer=True)
        last, _ = engine.query_pass(instr, docs, layout)
    assert rows.shape == (3, len(DOCS))
    for layer in range(3):
        torch.testing.assert_close(rows[layer], reference(lm, layout, layer)[0].float(),
                                   atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rows[2], last, atol=0, rtol=0)


def test_signal_tokens_are_the_query_text_or_the_answer_prefix(lm) -> None:
    by_query = build_layout(lm, "what  causes\ttides?", DOCS)
    words = lm.tokenizer.decode([by_query.query[i] for i in by_query.signal])
    assert words == " what causes tides?"
    by_answer = build_layout(lm, QUERY, DOCS, signal="answer", signal_tokens=2)
    assert by_answer.signal == (len(by_answer.query) - 2, len(by_answer.query) - 1)
    assert by_answer.query == by_query.query  # the prompt is the same, only the reading differs
    with pytest.raises(PursuitError, match="signal='last' is not one of query, answer"):
        build_layout(lm, QUERY, DOCS, signal="last")
    with pytest.raises(PursuitError, match="signal='last' is not one of query, answer"):
        BlockRankReranker(lm, signal="last")


def test_auto_layer_is_the_measured_one_else_the_middle() -> None:
    assert resolve_layer("auto", 24, "qwen2.5-coder-0.5b") == 11
    assert resolve_layer("auto", 28, "qwen2.5-coder-1.5b") == 14
    assert resolve_layer("middle", 24, "qwen2.5-coder-0.5b") == 12
    assert resolve_layer(-1, 24) == 23
    with pytest.raises(PursuitError, match="use an integer, 'middle' or 'auto'"):
        resolve_layer("top", 24)


def test_batched_path_equals_mask_path(lm) -> None:
    batched = BlockRankReranker(lm, layer=2, path="batched", batch_size=3, signal_tokens=2)
    mask = BlockRankReranker(lm, layer=2, path="mask", batch_size=4, signal_tokens=2)
    np.testing.assert_allclose(batched.score(QUERY, DOCS), mask.score(QUERY, DOCS),
                               atol=1e-6, rtol=1e-5)


def test_position_ids_and_mask_are_exact() -> None:
    layout = BlockLayout((1, 2, 3), ((4, 5), (6, 7, 8, 9), (10,)), (11, 12), signal=(1,))
    assert layout.flat_positions() == [0, 1, 2, 3, 4, 3, 4, 5, 6, 3, 7, 8]
    assert layout.segments() == [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4]
    m = layout.dense_mask().int()
    assert m[4].tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]   # doc 1, 2nd token
    assert m[5].tolist() == [1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]   # doc 2 never sees doc 1
    assert m[9].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert m[11].tolist() == [1] * 12                               # query sees everything
    assert m[2].tolist() == [1, 1, 1] + [0] * 9                     # instruction causal


def test_permuting_documents_permutes_scores_exactly(lm) -> None:
    r = BlockRankReranker(lm, layer=1, cache_bytes=0)
    base = dict(zip([d.id for d in DOCS], r.score(QUERY, DOCS).tolist(), strict=True))
    perm = [DOCS[2], DOCS[0], DOCS[3], DOCS[1]]
    again = dict(zip([d.id for d in perm], r.score(QUERY, perm).tolist(), strict=True))
    assert again == base  # bit-identical, not just close


def test_truncation_shortens_documents_and_keeps_the_query(lm) -> None:
    long = Doc("long", " ".join(["The moon pulls the ocean."] * 40))
    query = "what causes tides " * 10
    layout = build_layout(lm, query, [long, DOCS[1]], max_doc_tokens=40)
    assert 36 <= len(layout.docs[0]) <= 40
    text = lm.tokenizer.decode(list(layout.docs[0]))
    assert text.startswith("ID: long | CONTENT: The moon pulls") and text.endswith(" | END ID: long\n")
    assert long.text.startswith(text.removeprefix("ID: long | CONTENT: ").removesuffix(" | END ID: long\n"))
    assert query.strip() in lm.tokenizer.decode(list(layout.query))
    assert lm.tokenizer.decode(list(layout.query)).endswith("Final Answer: [")
    assert layout.docs[1] == tuple(doc_block_ids(lm.tokenizer, "d2", DOCS[1].text, None))
    with pytest.raises(PursuitError, match="max_doc_tokens=3 leaves no room"):
        build_layout(lm, query, [long], max_doc_tokens=3)


def test_reranker_stage_ranks_strictly_and_names_options(lm) -> None:
    r = BlockRankReranker(lm, layer=1)
    hits = Ranking.from_scores(Query("q1", QUERY), [(d.id, 1.0) for d in DOCS], pipeline="x",
                               docs={d.id: d for d in DOCS})
    ranking = r.transform(Query("q1", QUERY), hits)
    scores = [h.score for h in ranking.hits]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False))
    raw = dict(zip([d.id for d in DOCS], r.score(QUERY, DOCS).tolist(), strict=True))
    assert ranking.doc_ids() == sorted(raw, key=lambda d: -raw[d])
    assert r.name == "blockrank(layer=1)" and ranking.provenance.pipeline == r.name
    with pytest.raises(PursuitError, match=r"bm25%100 >> blockrank\(layer=1\)"):
        r.transform(Query("q1", QUERY), None)
    with pytest.raises(PursuitError, match="blockrank has no option 'layers'"):
        BlockRankReranker.from_options(None, layers=3)
    with pytest.raises(PursuitError, match="layer=5 is outside the model's 3 layers"):
        BlockRankReranker(lm, layer=5)


@pytest.fixture(scope="module")
def scifact(shared_data: Path):  # type: ignore[no-untyped-def]
    from pursuit.indexes.datasets.beir import read_beir

    return read_beir(shared_data / "beir-scifact", "test")


@pytest.mark.model
@pytest.mark.data
def test_packaged_model_puts_the_cited_abstract_first(scifact) -> None:
    """Two SciFact claims, each with its cited abstract among four unrelated ones."""
    corpus = {d.id: d for d in scifact.corpus}
    queries = [q for q in scifact.queries if q.id in scifact.qrels][:2]
    cited = {i for q in queries for i in scifact.qrels[q.id]}
    distractors = [d for d in scifact.corpus[:8] if d.id not in cited][:4]
    r = BlockRankReranker(max_doc_tokens=128)  # the defaults: query tokens at layer 11
    for q in queries:
        rel = [corpus[i] for i in scifact.qrels[q.id]][:1]
        pool = distractors[:2] + rel + distractors[2:]
        scores = r.score(q.text, pool)
        assert float(scores.sum()) == pytest.approx(1.0, abs=1e-3)
        assert int(np.argmax(scores)) == 2, (q.id, scores)
    assert r.stats.cache_hits == 4  # the distractors' blocks came from the cache
