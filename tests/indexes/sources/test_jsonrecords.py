"""JSON / JSON Lines records with a field map: exact docs, ids, dates, errors, MultiHop-RAG."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pursuit.indexes.errors import FormatError, PursuitError
from pursuit.indexes.records import Doc
from pursuit.indexes.sources.jsonrecords import MULTIHOP_RAG_FIELDS, FieldMap, read_records

ARTICLES = [
    {"title": "Deals", "author": None, "source": "Mashable", "category": "tech",
     "published_at": "2023-11-27 08:45:59.123456789Z", "url": "https://m.example/a", "body": "Buy."},
    {"title": "Rates", "author": "Ann", "source": "FT", "category": "business",
     "published_at": "2023-10-01T12:00:00+02:00", "url": "https://m.example/b", "body": "Up."},
]


def test_json_list_with_multihop_preset(tmp_path: Path) -> None:
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps(ARTICLES), encoding="utf-8")
    assert list(read_records(path, fields=MULTIHOP_RAG_FIELDS)) == [
        Doc("https://m.example/a", "Buy.", "Deals", "https://m.example/a",
            datetime(2023, 11, 27, 8, 45, 59, 123456, tzinfo=UTC),
            {"author": None, "source": "Mashable", "category": "tech"}),
        Doc("https://m.example/b", "Up.", "Rates", "https://m.example/b",
            datetime(2023, 10, 1, 10, 0, tzinfo=UTC),
            {"author": "Ann", "source": "FT", "category": "business"}),
    ]


def test_jsonl_default_fields_pick_id_and_parse_dates(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(
        '{"id": 7, "text": "seven", "published_at": "2024-02-29", "lang": "en"}\n\n'
        '{"id": "x", "text": "ex", "title": null, "published_at": 0}\n', encoding="utf-8")
    assert list(read_records(path)) == [
        Doc("7", "seven", published_at=datetime(2024, 2, 29, tzinfo=UTC), metadata={"lang": "en"}),
        Doc("x", "ex", published_at=datetime(1970, 1, 1, tzinfo=UTC)),
    ]


def test_mapping_field_map_and_hash_ids(tmp_path: Path) -> None:
    rec = {"headline": "H", "content": "C"}
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    digest = hashlib.sha1(b'{"content": "C", "headline": "H"}').hexdigest()[:16]
    assert list(read_records(path, fields={"text": "content", "title": "headline"})) == [
        Doc(f"sha1:{digest}", "C", "H")]
    with pytest.raises(PursuitError, match="unknown field map key\\(s\\) body; use id, "
                       "published_at, text, title, url"):
        read_records(path, fields={"body": "content"})


@pytest.mark.parametrize(
    ("content", "fields", "expected"),
    [
        ('{"text": "a"}\n{"title": "b"}\n', None,
         ':2: missing field "text"; every record needs it (or map another field with fields=)'),
        ('[{"text": "a"}, {"title": "b"}]', None,
         ': record 2: missing field "text"; every record needs it (or map another field with fields=)'),
        ('[{"body": "a", "url": "u"}, {"body": "b", "url": "u"}]', MULTIHOP_RAG_FIELDS,
         ': record 2: duplicate document id "u" (first at record 1); ids must be unique: '
         "map a unique id field or remove the repeat"),
        ('{"text": "a", "published_at": "last tuesday"}\n', None,
         ":1: field \"published_at\" value 'last tuesday' is not a date; expected ISO 8601 "
         "such as 2023-11-27T08:45:59Z, or Unix seconds"),
        ('{"text": ["a"]}\n', None, ':1: field "text" is list; expected a string'),
        ('{"text": "a", "doc": 1}\n', FieldMap(id="doc_no"),
         ':1: missing field "doc_no"; every record needs it (or map another field with fields=)'),
        ('[{"text": "a"}, 3]', None, ": record 2: expected a JSON object, found int"),
        ('[{"text": "a"},\n {"text": }]', None, ":2: invalid JSON (Expecting value at column 11)"),
        ('{"text": "a"}\n{"text": "a"}\n', None,
         ':2: duplicate document id "sha1:', ),
    ],
)
def test_errors_name_file_place_and_field(tmp_path: Path, content: str,
                                          fields: FieldMap | None, expected: str) -> None:
    path = tmp_path / ("x.json" if content.startswith("[") else "x.jsonl")
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FormatError) as err:
        list(read_records(path, fields=fields))
    assert str(err.value).startswith(f"{path}{expected}")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError) as err:
        list(read_records(tmp_path / "none.json"))
    assert str(err.value) == (f"{tmp_path / 'none.json'}: file not found; "
                              "expected a .json list or .jsonl file")


@pytest.mark.data
def test_multihop_rag_corpus(shared_data: Path) -> None:
    docs = list(read_records(shared_data / "multihop-rag" / "corpus.json",
                             fields=MULTIHOP_RAG_FIELDS))
    assert len(docs) == 609
    assert len({d.id for d in docs}) == 609
    first = docs[0]
    assert first.id == first.url == "https://mashable.com/article/cyber-monday-deals-amazon-2023"
    assert first.title == "200+ of the best deals from Amazon's Cyber Monday sale"
    assert first.published_at == datetime(2023, 11, 27, 8, 45, 59, tzinfo=UTC)
    assert first.metadata == {"category": "entertainment", "author": None, "source": "Mashable"}
    assert first.text.startswith("Table of Contents Table of Contents Echo, Fire TV")
    dates = [d.published_at for d in docs if d.published_at is not None]
    assert len(dates) == 609
    assert min(dates) == datetime(2023, 9, 26, 5, 26, 5, tzinfo=UTC)
    assert max(dates) == datetime(2023, 12, 25, 23, 36, tzinfo=UTC)
