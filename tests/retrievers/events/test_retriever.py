"""Event-aware retrieval: time-sensitivity, as-of filtering, fusion, recency, registry and CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.events.build import build_event_store, open_event_store
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.records import Doc, Query
from pursuit.retrievers.encoders import KeywordEncoder
from pursuit.retrievers.events.query_fusion import (
    EventFusion,
    FusionBatch,
    fusion_loss,
    train_fusion,
)
from pursuit.retrievers.events.retriever import EventAwareRetriever, fuse_default
from pursuit.retrievers.events.timesense import detect, fit_threshold
from pursuit.retrievers.pipeline_parser import parse_pipeline
from pursuit.retrievers.registry import index_stages

SENSITIVE = {
    "earthquake today": (1.5, ("relative", "event")),
    "Who won the election last week?": (2.0, ("relative", "news", "event")),
    "latest iPhone price": (1.0, ("recency",)),
    "What did the Fed announce on June 15?": (1.5, ("date", "news")),
    "stock market news 2022-06-16": (2.0, ("date", "year", "event")),
    "Which show was recently green lit for a new season?": (2.0, ("recency", "news", "new")),
    "Hurricane Ian death toll so far": (1.5, ("recency", "event")),
    "Tickets for the upcoming Taylor Swift tour": (1.0, ("future",)),
}
NOT_SENSITIVE = {
    "how do tides work": (0.0, ()),
    "what is the boiling point of water": (0.0, ()),
    "history of the 1918 pandemic": (0.0, ("year", "event", "history")),
    "the election of Abraham Lincoln": (0.5, ("event",)),
    "what is the primary function of the liver": (0.5, ("event",)),
    "will it compile": (0.5, ("new",)),
}


@pytest.mark.parametrize(("text", "want", "sensitive"),
                         [(t, w, True) for t, w in SENSITIVE.items()]
                         + [(t, w, False) for t, w in NOT_SENSITIVE.items()])
def test_time_sensitivity_on_written_examples(text, want, sensitive):
    signal = detect(text)
    assert (signal.sensitive, signal.score, signal.cues) == (sensitive, *want)


def test_learned_threshold():
    texts = [*SENSITIVE, *NOT_SENSITIVE]
    labels = [True] * len(SENSITIVE) + [False] * len(NOT_SENSITIVE)
    assert fit_threshold(texts, labels) == 1.0
    # A stricter labelling moves it: only queries with two cue kinds or more count.
    assert fit_threshold(texts, [detect(t).score >= 1.5 for t in texts]) == 1.5
    assert detect("latest iPhone price", threshold=1.5).sensitive is False
    with pytest.raises(ValueError, match="as many labels as texts"):
        fit_threshold(texts, labels[:-1])


T0 = datetime(2022, 6, 1, tzinfo=UTC)
VOCAB = ["quake", "rescue", "vote", "storm", "budget"]


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def index(tmp_path):
    docs = [Doc("q1", "quake rescue", published_at=day(1)), Doc("q2", "quake", published_at=day(2)),
            Doc("v1", "vote budget", published_at=day(2)), Doc("s1", "storm", published_at=day(1)),
            Doc("s2", "storm", published_at=day(3)), Doc("r1", "rescue", published_at=day(4)),
            Doc("u1", "quake rescue storm")]
    idx = SearchIndex.build(docs, tmp_path / "idx", source="toy", encoder=KeywordEncoder(VOCAB))
    build_event_store(idx, window_days=2, threshold=0.6)
    yield idx
    idx.close()


def stage(index, **kwargs):
    return EventAwareRetriever(index.vectors, KeywordEncoder(VOCAB), index.store,
                               open_event_store(index), **kwargs)


def test_default_fusion_changes_the_query_only_when_events_match(index):
    events = open_event_store(index)
    assert [e.members for e in events.events()] == [("q1", "q2"), ("s1", "s2"), ("v1",),
                                                    ("r1",)]
    s = stage(index, min_similarity=0.5)
    q = KeywordEncoder(VOCAB).encode_query(["quake today"])[0]
    hit = s.expand(Query("a", "quake today", {"as_of": "2022-06-05"}))
    assert hit.sensitive and [(e.id, round(c, 4)) for e, c in hit.events] == [(0, 0.9239)]
    want = fuse_default(q, events.centroids[[0]])
    assert np.array_equal(hit.vector, want) and not np.allclose(want, q)
    expected = 0.7 * q + 0.3 * events.centroids[0]
    np.testing.assert_allclose(want, expected / np.linalg.norm(expected), rtol=1e-6)
    # Not time-sensitive, or no event ended before the as-of time: the query is untouched.
    assert np.array_equal(s.expand(Query("b", "quake", {"as_of": "2022-06-05"})).vector, q)
    early = s.expand(Query("c", "quake today", {"as_of": "2022-06-02"}))
    assert early.events == () and np.array_equal(early.vector, q)
    assert np.array_equal(fuse_default(q, np.zeros((0, 5), dtype=np.float32)), q)


def test_as_of_never_leaks_a_later_document(tmp_path):
    rng = np.random.default_rng(7)
    docs = []
    for i in range(40):
        words = rng.choice(VOCAB, size=int(rng.integers(1, 4)))
        when = None if i % 9 == 0 else day(float(rng.integers(0, 30)) + rng.choice([0, 0.5]))
        docs.append(Doc(f"d{i:02d}", " ".join(words), published_at=when))
    with SearchIndex.build(docs, tmp_path / "rand", source="rand",
                           encoder=KeywordEncoder(VOCAB)) as idx:
        build_event_store(idx, window_days=3, threshold=0.5)
        deep = stage(idx, always=True, beta=0.3, half_life_days=2, k=100)
        shallow = stage(idx, always=True, beta=0.3, half_life_days=2, k=3)
        dates = {d.id: d.published_at for d in docs}
        for trial in range(150):
            as_of = day(float(rng.uniform(-2, 33)))
            if trial % 5 == 0:  # exactly at a document's time: that document must be out
                as_of = docs[int(rng.integers(1, 9))].published_at or as_of
            text = " ".join(rng.choice(VOCAB, size=2))
            allowed = {i for i, t in dates.items() if t is not None and t < as_of}
            query = (Query("q", text, {"as_of": as_of.isoformat()}) if trial % 2 else
                     Query("q", text, {"filter": DocFilter(published_before=as_of)}))
            assert set(deep.search(query).doc_ids()) == allowed
            top = shallow.search(query).doc_ids()
            assert len(top) == min(3, len(allowed)) and set(top) <= allowed


def test_recency_bonus_is_exact(index):
    s = stage(index, n_events=0, beta=0.2, half_life_days=1.0)
    ranking = s.search(Query("a", "storm today", {"as_of": day(4).isoformat()}))
    assert ranking.doc_ids()[:2] == ["s2", "s1"]
    assert [h.score for h in ranking][:2] == pytest.approx([1 + 0.2 * 0.5, 1 + 0.2 * 0.125])
    # A query that is not time-sensitive gets no bonus, so the tie is broken by id.
    plain = s.search(Query("b", "storm", {"as_of": day(4).isoformat()}))
    assert plain.doc_ids()[:2] == ["s1", "s2"] and plain.hits[0].score == pytest.approx(1.0)
    assert s.score(Query("a", "storm today", {"as_of": day(4).isoformat()}),
                   ["s1", "s2"]).tolist() == pytest.approx([1.025, 1.1])


def test_registry_and_pipeline_text(index, tmp_path):
    stages = index_stages(index)
    pipeline = parse_pipeline("events(beta=0.2, n_events=0)%2", stages)
    assert pipeline.name == "events(beta=0.2, n_events=0)%2"
    flt = DocFilter(published_before=day(4))
    got = pipeline.search(Query("a", "storm today", {"filter": flt}))
    assert got.doc_ids() == ["s2", "s1"]
    plain = SearchIndex.build([Doc("x", "storm")], tmp_path / "plain", source="toy",
                              encoder=KeywordEncoder(VOCAB))
    assert sorted(index_stages(plain)) == ["bm25", "dense"]
    plain.close()


def test_the_agent_searches_with_events_when_the_index_has_them(index, tmp_path):
    from pursuit.agent.config import AgentConfig
    from pursuit.agent.searcher import SearchTools

    config = AgentConfig(rerank=None, pool_k=3)
    first = SearchTools.over(index, config).first_stage
    assert first.name == "0.5*bm25%3 + 0.5*events%3"
    got = first.search(Query("a", "storm today", {"filter": DocFilter(published_before=day(2))}))
    assert got.doc_ids() == ["s1", "q1"]  # only these two are dated before day 2
    plain = SearchIndex.build([Doc("x", "storm")], tmp_path / "plain", source="toy",
                              encoder=KeywordEncoder(VOCAB))
    assert SearchTools.over(plain, config).first_stage.name == "0.5*bm25%3 + 0.5*dense%3"
    assert SearchTools.over(index, AgentConfig(retrieval="bm25%2")).first_stage.name == "bm25%2"
    plain.close()


def _batch(seed: int, b: int = 4, m: int = 3, d: int = 6) -> FusionBatch:
    g = torch.Generator().manual_seed(seed)
    unit = lambda *shape: torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)  # noqa: E731
    mask = torch.ones(b, m, dtype=torch.bool)
    mask[1, 2] = False
    mask[3] = False  # a query with no event keeps its vector
    return FusionBatch(unit(b, d), unit(b, m, d), mask, unit(b, d), unit(5, d), unit(b, d),
                       torch.tensor([True, True, False, True]))


def test_fusion_module_shapes_default_and_gradients():
    batch = _batch(0)
    module = EventFusion(6)
    out = module(batch.queries, batch.events, batch.mask)
    assert out.shape == (4, 6)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    for i in range(4):  # untrained == the parameter-free default
        ev = batch.events[i][batch.mask[i]].numpy()
        want = fuse_default(batch.queries[i].numpy(), ev)
        np.testing.assert_allclose(out[i].detach().numpy(), want, atol=1e-5)
    torch.testing.assert_close(out[3], batch.queries[3])
    fusion_loss(module, batch).backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_one_training_step_reduces_the_loss():
    batch = _batch(1)
    module = EventFusion(6)
    with torch.no_grad():
        before = float(fusion_loss(module, batch))
    history = train_fusion(module, [batch], epochs=1, lr=1e-2, seed=0)
    with torch.no_grad():
        after = float(fusion_loss(module, batch))
    assert history == [pytest.approx(before)] and after < before


def test_cli_events_build(index, capsys, monkeypatch, tmp_path):
    from pursuit.ui.cli import app as cli

    monkeypatch.setenv("PURSUIT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setattr("sys.argv", ["pursuit", "events", "build", "--index", str(index.path),
                                     "--window-days", "2", "--threshold", "0.6", "--rebuild",
                                     "--json"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code in (0, None)
    assert json.loads(capsys.readouterr().out) == {"index": str(index.path), "events": 4,
                                                   "documents": 6, "largest": 2}
    monkeypatch.setattr("sys.argv", ["pursuit", "events", "build", "--index",
                                     str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as failed:
        cli.main()
    assert failed.value.code == 1
    assert "no index at" in capsys.readouterr().err


def test_mentioned_dates_and_date_anchored_events(index):
    from datetime import date

    from pursuit.retrievers.events.timesense import mentioned_dates

    assert mentioned_dates("After the TechCrunch report on October 7, 2023, and the article on "
                           "Oct. 30 2023, and again on October 7, 2023") == [
        date(2023, 10, 7), date(2023, 10, 30)]
    assert mentioned_dates("on 7 June 2022, 2022-06-16 and Feb 30, 2023; not June 16") == [
        date(2022, 6, 7), date(2022, 6, 16)]
    s = stage(index, min_similarity=0.5, beta=0.2)
    text = "quake report on June 2, 2022"
    late = {"as_of": "2022-07-01"}  # a month after event 0: beyond the 7-day horizon
    anchored = s.expand(Query("a", text, late))
    assert anchored.named == (date(2022, 6, 2),)
    assert [e.id for e, _ in anchored.events] == [0]
    assert stage(index, min_similarity=0.5, around_days=-1).expand(Query("a", text, late)).events == ()
    # A query naming its dates gets no recency bonus: scores are plain cosines.
    q = Query("a", text, late)
    np.testing.assert_allclose(s.score(q, ["q2", "s2"]),
                               index.vectors.vectors_of(index.store.rows_of(["q2", "s2"]))
                               @ anchored.vector, rtol=1e-6)


def test_fusion_batch_pads_events_and_marks_gold():
    from pursuit.retrievers.events.query_fusion import fusion_batch

    q = np.eye(3, dtype=np.float32)[:2]
    b = fusion_batch(q, [np.eye(3)[:2], np.zeros((0, 3))], q, np.eye(3)[2:] * 2,
                     [None, np.eye(3)[1]])
    assert (b.events.shape, b.mask.tolist(), b.negatives.shape) == (
        (2, 2, 3), [[True, True], [False, False]], (1, 3))
    assert b.has_gold_event.tolist() == [False, True] and b.gold_events[0].abs().sum() == 0
    fused = EventFusion(3)(b.queries, b.events, b.mask)
    torch.testing.assert_close(fused[1], b.queries[1])  # no event: the query as it was
