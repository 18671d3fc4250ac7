"""The event store: exact clustering, incremental == batch, files on disk, damage and staleness."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.events.build import build_event_store, open_event_store
from pursuit.indexes.events.files import EventStoreError, load_event_store, save_event_store
from pursuit.indexes.events.store import EventStore
from pursuit.indexes.records import Doc
from pursuit.retrievers.encoders import KeywordEncoder

T0 = datetime(2022, 6, 1, tzinfo=UTC)
ENC = {"model_id": "toy", "dim": 2}


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def test_exact_events_titles_and_window():
    s = EventStore(dim=2, window_days=2, threshold=0.9)
    v = np.array([[1, 0], [1, 0.2], [0, 1], [1, 0.05], [1, 0]], dtype=np.float32)
    got = s.add(["a", "b", "c", "d", "e"], v, [day(0), day(1), day(1), day(2), day(5)],
                ["A", "B", "C", "D", "E"])
    # d fits event 0 (span day 0..2 = 2 days); e is 3 days past its end: a new event.
    assert got == [0, 0, 1, 0, 2]
    e0 = s.event(0)
    assert (e0.members, e0.start, e0.end) == (("a", "b", "d"), day(0), day(2))
    # centroid of a, b, d: d (0.05) is closest to it, closer than a (0) once b pulls it up.
    c = s.centroids[0]
    assert c @ v[3] / np.linalg.norm(v[3]) > c @ v[0]
    assert (e0.representative, e0.title) == ("d", "D")
    assert [e.title for e in s.events()] == ["D", "C", "E"]
    with pytest.raises(ValueError, match="document 'a' is already in event 0"):
        s.add(["a"], v[:1], [day(9)], ["A"])


def test_near_respects_as_of_horizon_and_similarity():
    s = EventStore(dim=2, window_days=1, threshold=0.99)
    s.add(["a", "b", "c"], np.array([[1, 0], [0, 1], [1, 0.1]]), [day(0), day(3), day(6)],
          ["A", "B", "C"])
    q = np.array([1.0, 0.0])
    # Event 2 ends on day 6: an as-of time of day 6 itself excludes it (it must end before).
    assert [i for i, _ in s.near(q, as_of=day(6), horizon_days=10, k=5)] == [0, 1]
    assert [i for i, _ in s.near(q, as_of=day(6) + timedelta(microseconds=1),
                                 horizon_days=10, k=5)] == [0, 2, 1]
    assert [i for i, _ in s.near(q, as_of=day(7), horizon_days=2, k=5)] == [2]
    assert [i for i, _ in s.near(q, as_of=day(7), horizon_days=10, k=5,
                                 min_similarity=0.5)] == [0, 2]
    assert s.near(q, as_of=day(0), horizon_days=10) == []
    assert [i for i, _ in s.near(q, as_of=None, k=1)] == [0]


def _random_stream(seed: int, n: int = 300, dim: int = 8):
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(12, dim))
    vecs = topics[rng.integers(0, 12, n)] + 0.4 * rng.normal(size=(n, dim))
    times = [day(float(x)) for x in np.sort(rng.uniform(0, 60, n))]
    return [f"d{i}" for i in range(n)], vecs, times, [f"title {i}" for i in range(n)]


def test_incremental_equals_batch_across_save_and_load(tmp_path):
    ids, vecs, times, titles = _random_stream(0)
    batch = EventStore(dim=8, window_days=4, threshold=0.7)
    batch.add(ids, vecs, times, titles)
    assert 20 < len(batch) < 250  # real clustering happened
    inc = EventStore(dim=8, window_days=4, threshold=0.7)
    cuts = [0, 1, 57, 58, 190, 300]
    for a, b in zip(cuts, cuts[1:], strict=False):
        inc.add(ids[a:b], vecs[a:b], times[a:b], titles[a:b])
        save_event_store(inc, tmp_path / "events", encoder={"model_id": "m", "dim": 8},
                         index_state={})
        inc = load_event_store(tmp_path / "events")
    assert inc.events() == batch.events()
    (a_arrays, a_records), (b_arrays, b_records) = inc.state(), batch.state()
    assert a_records == b_records
    for name in ("centroids", "sums", "reps"):
        assert np.array_equal(a_arrays[name], b_arrays[name])
    assert inc.event_of == batch.event_of


def test_files_on_disk_and_damage(tmp_path):
    s = EventStore(dim=2, window_days=2, threshold=0.9)
    s.add(["a", "b"], np.array([[1, 0], [0, 1]]), [day(0), day(1)], ["A", "B"])
    target = tmp_path / "idx" / "events"
    save_event_store(s, target, encoder=ENC, index_state={"corpus_sha256": "x", "n_docs": 2})
    assert sorted(p.name for p in target.iterdir()) == ["centroids.npy", "events.json",
                                                        "reps.npy", "sums.npy"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["events"]  # no staging left
    meta = json.loads((target / "events.json").read_text())
    assert (meta["n_events"], meta["encoder"], meta["params"]["window_days"]) == (2, ENC, 2.0)
    assert meta["events"][1]["members"] == ["b"] and meta["events"][1]["start"].startswith(
        "2022-06-02T00:00:00")
    assert load_event_store(target).events() == s.events()
    # A changed array file.
    raw = bytearray((target / "sums.npy").read_bytes())
    raw[-1] ^= 0xFF
    (target / "sums.npy").write_bytes(bytes(raw))
    with pytest.raises(EventStoreError) as err:
        load_event_store(target, index_path="IDX")
    assert str(err.value) == (f"the event store {target} is damaged (sums.npy is missing or "
                              f"changed since it was written); rebuild it with: pursuit events "
                              f"build --index IDX")
    # A truncated events.json.
    save_event_store(s, target, encoder=ENC, index_state={})
    (target / "events.json").write_text('{"format": "pursuit-ev')
    with pytest.raises(EventStoreError, match=r"is damaged \(Unterminated string.*pursuit "
                                              r"events build --index IDX$"):
        load_event_store(target, index_path="IDX")
    with pytest.raises(EventStoreError, match="IDX has no event store .* build one with: "
                                              "pursuit events build --index IDX"):
        load_event_store(tmp_path / "nowhere", index_path="IDX")
    save_event_store(s, target, encoder=ENC, index_state={})
    with pytest.raises(EventStoreError, match=r"built with toy \(2-d\) but the index uses "
                                              r"other \(2-d\)"):
        load_event_store(target, encoder={"model_id": "other", "dim": 2})


VOCAB = ["quake", "vote", "storm"]


def _doc(i: int, text: str, d: float | None) -> Doc:
    return Doc(f"d{i}", text, title=f"T{i} {text}", published_at=day(d) if d is not None else None)


DOCS = [_doc(0, "quake", 0), _doc(1, "quake quake vote", 1), _doc(2, "vote", 1),
        _doc(3, "storm", 2), _doc(4, "quake", 10), _doc(5, "vote storm", None)]


def test_build_over_index_update_and_staleness(tmp_path):
    enc = KeywordEncoder(VOCAB)
    index = SearchIndex.build(DOCS, tmp_path / "idx", source="toy", encoder=enc)
    store = build_event_store(index, window_days=3, threshold=0.8)
    assert [e.members for e in store.events()] == [("d0", "d1"), ("d2",), ("d3",), ("d4",)]
    assert "d5" not in store.event_of  # undated: no place in time
    assert open_event_store(index).events() == store.events()
    index = index.add([_doc(6, "storm storm", 3), _doc(7, "quake", 11)], encoder=enc)
    with pytest.raises(EventStoreError) as err:
        open_event_store(index)
    assert str(err.value) == (f"the event store {index.path / 'events'} is out of date: it was "
                              f"built from 6 documents and the index now holds 8 (or others); "
                              f"update it with: pursuit events build --index {index.path}")
    updated = build_event_store(index, window_days=3, threshold=0.8)
    fresh = EventStore(3, window_days=3, threshold=0.8)
    order = sorted([d for d in [*DOCS, _doc(6, "storm storm", 3), _doc(7, "quake", 11)]
                    if d.published_at], key=lambda d: (d.published_at, d.id))
    fresh.add([d.id for d in order], enc.encode_document([d.contents() for d in order]),
              [d.published_at for d in order], [d.title for d in order])
    assert updated.events() == fresh.events()
    assert [e.members for e in updated.events()] == [("d0", "d1"), ("d2",), ("d3", "d6"),
                                                     ("d4", "d7")]
    assert open_event_store(index).events() == updated.events()
    index.close()
    bm25_only = SearchIndex.build(DOCS, tmp_path / "plain", source="toy")
    with pytest.raises(EventStoreError, match="has no dense vectors, and events are clusters"):
        build_event_store(bm25_only)
    bm25_only.close()
