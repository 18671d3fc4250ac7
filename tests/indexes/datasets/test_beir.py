"""BEIR folder reading and writing: exact records, error messages, round trip, SciFact."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pursuit.indexes.datasets.beir import (
    Dataset,
    read_beir,
    read_corpus_jsonl,
    read_qrels_tsv,
    write_beir,
)
from pursuit.indexes.errors import FormatError
from pursuit.indexes.records import Doc, Query


def make_folder(root: Path, *, corpus: list[str] | None = None, queries: list[str] | None = None,
                qrels: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    corpus = corpus if corpus is not None else [
        json.dumps({"_id": "d1", "title": "Tides", "text": "The moon pulls the sea.",
                    "metadata": {"year": 2001}}),
        json.dumps({"_id": "d2", "title": "", "text": "Caf\u00e9 culture.", "metadata": {}}),
        json.dumps({"_id": 3, "text": "Numeric id, no title."}),
    ]
    queries = queries if queries is not None else [
        json.dumps({"_id": "q1", "text": "what causes tides", "metadata": {}}),
        json.dumps({"_id": "q2", "text": "train-only query"}),
        json.dumps({"_id": "q3", "text": "coffee", "metadata": {"lang": "en"}}),
    ]
    qrels = qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t2\nq3\td2\t1\nq3\t3\t0\n"
    (root / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (root / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return root


def test_read_beir_exact_records(tmp_path: Path) -> None:
    ds = read_beir(make_folder(tmp_path / "toy"))
    assert ds.name == "toy"
    assert ds.corpus == [
        Doc("d1", "The moon pulls the sea.", "Tides", metadata={"year": 2001}),
        Doc("d2", "Café culture.", ""),
        Doc("3", "Numeric id, no title."),
    ]
    # q2 is not judged in the test split, so it is dropped.
    assert ds.queries == [Query("q1", "what causes tides"), Query("q3", "coffee", {"lang": "en"})]
    assert ds.qrels == {"q1": {"d1": 2}, "q3": {"d2": 1, "3": 0}}


def test_qrels_header_optional(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("q1\td1\t1\n\nq1\td2\t0\n", encoding="utf-8")
    assert read_qrels_tsv(path) == {"q1": {"d1": 1, "d2": 0}}


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\n", 2,
         "expected 3 tab-separated columns (query-id, corpus-id, score), found 2"),
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", 2,
         'score "high" is not an integer; expected a relevance grade such as 0, 1 or 2'),
        ("q1\td1\t1\nq1\td1\t0\n", 2, "pair (q1, d1) is judged twice"),
        ("q1 d1 1\n", 1, "expected 3 tab-separated columns (query-id, corpus-id, score), found 1"),
    ],
)
def test_bad_qrels_rows(tmp_path: Path, rows: str, line: int, message: str) -> None:
    path = tmp_path / "q.tsv"
    path.write_text(rows, encoding="utf-8")
    with pytest.raises(FormatError) as err:
        read_qrels_tsv(path)
    assert str(err.value) == f"{path}:{line}: {message}"
    assert err.value.line == line


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (['{"_id": "a", "text": "x"}', '{"_id": "b", "text": "y"'], 2,
         "invalid JSON (Expecting ',' delimiter at column 25); expected one JSON object per line"),
        (['{"_id": "a", "title": "t"}'], 1, 'missing field "text"; every record needs "text"'),
        (['{"text": "x"}'], 1, 'missing field "_id"; every record needs "_id"'),
        (['{"_id": "a", "text": ["x"]}'], 1, 'field "text" is list; expected a string'),
        (['{"_id": "a", "text": "x", "metadata": 5}'], 1,
         'field "metadata" is int; expected a JSON object'),
        (['["a", "x"]'], 1, "expected a JSON object per line, found list"),
        (['{"_id": "a", "text": "x"}', "", '{"_id": "a", "text": "y"}'], 3,
         'duplicate document id "a" (first on line 1); document ids must be unique'),
    ],
)
def test_bad_corpus_lines(tmp_path: Path, lines: list[str], line: int, message: str) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(FormatError) as err:
        list(read_corpus_jsonl(path))
    assert str(err.value) == f"{path}:{line}: {message}"


def test_undecodable_corpus_line(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "x"}\n{"_id": "b", "text": "\xff"}\n')
    with pytest.raises(FormatError, match=r"corpus.jsonl:2: not valid UTF-8"):
        list(read_corpus_jsonl(path))


def test_missing_files_and_split(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "toy")
    with pytest.raises(FormatError) as err:
        read_beir(folder, "dev")
    assert str(err.value) == f'{folder / "qrels" / "dev.tsv"}: no qrels for split "dev"; splits present: test'
    (folder / "queries.jsonl").unlink()
    with pytest.raises(FormatError) as err:
        read_beir(folder)
    assert str(err.value) == f"{folder / 'queries.jsonl'}: file not found; expected a JSON Lines file"
    with pytest.raises(FormatError, match="not a folder; expected a BEIR folder"):
        read_beir(tmp_path / "nope")


def test_judged_query_missing_from_queries(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "toy", qrels="q1\td1\t1\nq9\td1\t1\n")
    with pytest.raises(FormatError) as err:
        read_beir(folder)
    assert str(err.value) == (
        f"{folder / 'qrels' / 'test.tsv'}: 1 judged query id(s) are not in queries.jsonl: q9"
    )


def test_round_trip(tmp_path: Path) -> None:
    ds = read_beir(make_folder(tmp_path / "src"), name="toy")
    out = write_beir(ds, tmp_path / "out")
    assert read_beir(out, name="toy") == ds
    assert (out / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines() == [
        "query-id\tcorpus-id\tscore", "q1\td1\t2", "q3\td2\t1", "q3\t3\t0",
    ]


def test_write_keeps_url_and_date_in_metadata(tmp_path: Path) -> None:
    when = datetime(2023, 11, 27, 8, 45, 59, tzinfo=UTC)
    ds = Dataset("x", [Doc("a", "t", "T", url="https://e.x/a", published_at=when)],
                 [Query("q", "t")], {"q": {"a": 1}})
    back = read_beir(write_beir(ds, tmp_path / "x"))
    assert back.corpus == [Doc("a", "t", "T", metadata={
        "url": "https://e.x/a", "published_at": "2023-11-27T08:45:59+00:00"})]


@pytest.mark.data
def test_scifact_counts(shared_data: Path) -> None:
    ds = read_beir(shared_data / "beir-scifact")
    assert ds.name == "beir-scifact"
    assert len(ds.corpus) == 5183
    assert len(ds.queries) == 300
    assert sum(len(v) for v in ds.qrels.values()) == 339
    assert len({d for v in ds.qrels.values() for d in v}) == 283
    assert ds.corpus[0].id == "4983"
    assert ds.corpus[0].title.startswith("Microstructural development of human newborn")
    assert ds.queries[0] == Query("1", "0-dimensional biomaterials show inductive properties.")
    assert ds.qrels["1"] == {"31715818": 1}
    train = read_beir(shared_data / "beir-scifact", "train")
    assert (len(train.queries), sum(len(v) for v in train.qrels.values())) == (809, 919)
