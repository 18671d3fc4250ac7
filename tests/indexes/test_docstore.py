"""DocStore: round trips, rows and tombstones, batched reads, filter masks, damaged files."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from pursuit.indexes import docstore as docstore_mod
from pursuit.indexes.docstore import DocStore, DuplicateDocError, UnknownDocError
from pursuit.indexes.errors import IndexError_
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.records import Doc

T0 = datetime(2023, 11, 1, 12, 30, 15, 123456, tzinfo=UTC)
DOCS = [
    Doc("a", "alpha text", title="Alpha", url="https://x.org/a", published_at=T0,
        metadata={"source": "news", "n": 1, "tags": ["x", "y"], "nested": {"k": None}}),
    Doc("b", "beta text", published_at=T0 + timedelta(days=1), metadata={"source": "blog"}),
    Doc("c", "gamma text, ünïcödé ✓", title="Gamma", metadata={"source": "news"}),
    Doc("d", "delta text", published_at=T0 - timedelta(microseconds=1), metadata={"n": 1.0}),
]


@pytest.fixture
def store(tmp_path: Path) -> DocStore:
    s = DocStore.create(tmp_path / "docs.sqlite")
    s.add(DOCS)
    return s


def test_round_trip_is_exact_and_survives_reopening(store: DocStore, tmp_path: Path) -> None:
    store.close()
    with DocStore.open(tmp_path / "docs.sqlite", readonly=True) as s:
        got = s.get(["c", "a", "b", "d"])
        assert list(got) == ["c", "a", "b", "d"]
        for d in DOCS:
            assert got[d.id] == d
        assert got["a"].published_at is not None and got["a"].published_at.tzinfo is not None
        added = s.added_at(["a"])["a"]
        assert added.tzinfo is not None and abs(datetime.now(UTC) - added) < timedelta(minutes=5)


def test_dates_in_other_zones_come_back_as_the_same_instant_in_utc(tmp_path: Path) -> None:
    local = datetime(2024, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=5)))
    with DocStore.create(tmp_path / "s.sqlite") as s:
        s.add([Doc("z", "t", published_at=local), Doc("n", "t", published_at=datetime(1960, 5, 1))])
        got = s.get(["z", "n"])
        assert got["z"].published_at == local
        assert got["z"].published_at.utcoffset() == timedelta(0)
        assert got["n"].published_at == datetime(1960, 5, 1, tzinfo=UTC)


def test_rows_are_insertion_order_and_never_reused(store: DocStore) -> None:
    assert store.rows_of(["d", "a"]).tolist() == [3, 0]
    assert store.delete(["b"]).tolist() == [1]
    assert (store.n_rows, len(store)) == (4, 3)
    assert store.live_rows().tolist() == [0, 2, 3]
    assert store.add([Doc("b", "beta again"), Doc("e", "epsilon")]).tolist() == [4, 5]
    assert store.ids_of([1, 4, 5]) == ["b", "b", "e"]  # the tombstone keeps its id
    assert store.get(["b"])["b"].text == "beta again"
    assert store.all_ids() == ["a", "b", "c", "d", "b", "e"]
    assert [(r, d.id) for r, d in store.iter_docs(batch_size=2)] == [
        (0, "a"), (2, "c"), (3, "d"), (4, "b"), (5, "e")]


def test_tombstones_are_cleared_and_unreadable(store: DocStore) -> None:
    store.delete(["a"])
    raw = store._query("SELECT title, text, url, published_us, metadata FROM docs WHERE row = 0")
    assert raw == [("", "", None, None, "{}")]
    with pytest.raises(UnknownDocError, match=r"rows \[0\] are not live documents"):
        store.get_rows([0])
    with pytest.raises(UnknownDocError, match="no document with id 'a'"):
        store.get(["a"])
    assert store.get(["a", "c"], missing="skip") == {"c": DOCS[2]}
    with pytest.raises(UnknownDocError, match="no document with id 'zz'"):
        store.delete(["zz"])


def test_duplicate_id_rolls_the_whole_batch_back(store: DocStore) -> None:
    with pytest.raises(DuplicateDocError, match=r"document id 'a' is already in .*nothing was added"):
        store.add([Doc("new1", "x"), Doc("a", "again"), Doc("new2", "y")])
    with pytest.raises(DuplicateDocError, match="document id 'q' appears twice in the added batch"):
        store.add([Doc("q", "x"), Doc("q", "y")])
    assert (store.n_rows, len(store)) == (4, 4)
    assert store.get(["new1", "q"], missing="skip") == {}
    assert store.add([Doc("new1", "x")]).tolist() == [4]


def test_metadata_that_is_not_json_names_the_document(tmp_path: Path) -> None:
    with DocStore.create(tmp_path / "s.sqlite") as s, \
            pytest.raises(ValueError, match="document 'bad': metadata is not JSON-serialisable"):
        s.add([Doc("ok", "x"), Doc("bad", "y", metadata={"when": object()})])


def test_batched_get_crosses_chunk_boundaries(tmp_path: Path) -> None:
    n = docstore_mod.CHUNK * 2 + 7
    with DocStore.create(tmp_path / "big.sqlite") as s:
        s.add(Doc(f"d{i}", f"text {i}") for i in range(n))
        ids = [f"d{i}" for i in range(n - 1, -1, -2)]
        got = s.get(ids)
        assert list(got) == ids and got["d4"].text == "text 4"
        assert s.rows_of(ids).tolist() == list(range(n - 1, -1, -2))
        assert [d.id for d in s.get_rows(np.arange(n)[::-1])] == [f"d{i}" for i in range(n)][::-1]
        assert s.ids_of(range(n)) == [f"d{i}" for i in range(n)]


FILTERS = [
    DocFilter(published_after=T0),
    DocFilter(published_before=T0),
    DocFilter(published_after=T0 - timedelta(microseconds=1), published_before=T0),
    DocFilter(metadata={"source": "news"}),
    DocFilter(metadata={"source": ["blog", "other"]}),
    DocFilter(metadata={"n": True}),  # 1 == 1.0 == True in Python, so a and d pass
    DocFilter(metadata={"tags": ["x", "y"]}),  # a list means "any of": no doc's tags is "x"
    DocFilter(published_after=T0, metadata={"source": "news"}),
    DocFilter(),
]


@pytest.mark.parametrize("flt", FILTERS)
def test_mask_agrees_with_docfilter_accepts(store: DocStore, flt: DocFilter) -> None:
    store.delete(["b"])
    live = {d.id: d for d in DOCS if d.id != "b"}
    want = [d.id in live and flt.accepts(d) for d in DOCS]
    assert store.mask(flt).tolist() == want


def test_mask_values(store: DocStore) -> None:
    # Docs without a date never pass a time window; the window is half-open.
    assert store.mask(DocFilter(published_after=T0)).tolist() == [True, True, False, False]
    assert store.mask(DocFilter(published_before=T0)).tolist() == [False, False, False, True]
    assert store.mask(DocFilter(metadata={"n": True})).tolist() == [True, False, False, True]
    store.delete(["a"])
    assert store.mask(None).tolist() == [False, True, True, True]
    assert store.mask(DocFilter(metadata={"source": "news"})).tolist() == [False, False, True, False]


def test_empty_store(tmp_path: Path) -> None:
    with DocStore.create(tmp_path / "e.sqlite") as s:
        assert (s.n_rows, len(s), s.mask().shape, s.live_rows().tolist()) == (0, 0, (0,), [])
        assert list(s.iter_docs()) == []


def test_create_refuses_an_existing_file(store: DocStore, tmp_path: Path) -> None:
    with pytest.raises(FileExistsError, match="already exists"):
        DocStore.create(tmp_path / "docs.sqlite")


def test_readonly_store_refuses_writes(store: DocStore, tmp_path: Path) -> None:
    store.close()
    with DocStore.open(tmp_path / "docs.sqlite", readonly=True) as s, \
            pytest.raises(sqlite3.OperationalError, match="readonly"):
        s.add([Doc("z", "z")])


def test_damaged_or_foreign_files_name_the_file_and_the_rebuild(tmp_path: Path) -> None:
    junk = tmp_path / "idx" / "docs.sqlite"
    junk.parent.mkdir()
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexError_, match=rf"{junk}: not a readable document store \(file is not "
                       rf"a database\); rebuild the index with: pursuit index SOURCE --out {junk.parent}"):
        DocStore.open(junk)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).executescript("CREATE TABLE meta (key, value); CREATE TABLE docs (row);")
    with pytest.raises(IndexError_, match=f"{other}: not a pursuit document store; rebuild"):
        DocStore.open(other)
    with pytest.raises(IndexError_, match=f"{tmp_path / 'nope.sqlite'}: document store not found"):
        DocStore.open(tmp_path / "nope.sqlite")
