"""Dispatch from a SOURCE string to documents: each accepted kind, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc
from pursuit.indexes.sources.corpus import ACCEPTED, load_corpus, resolve_fields
from pursuit.indexes.sources.jsonrecords import MULTIHOP_RAG_FIELDS, FieldMap


def test_beir_folder_and_corpus_file(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "x", "metadata": {"y": 1}}\n', encoding="utf-8")
    label, docs = load_corpus(folder)
    assert (label, list(docs)) == ("BEIR corpus toy", [Doc("d1", "x", "T", metadata={"y": 1})])
    label, docs = load_corpus(folder / "corpus.jsonl")
    assert (label, list(docs)) == ("BEIR corpus file corpus.jsonl",
                                   [Doc("d1", "x", "T", metadata={"y": 1})])


def test_json_records_with_fields_and_preset(tmp_path: Path) -> None:
    path = tmp_path / "news.json"
    path.write_text(json.dumps([{"url": "u1", "body": "b", "title": "t", "head": "h"}]),
                    encoding="utf-8")
    label, docs = load_corpus(str(path), fields={"preset": "multihop-rag"})
    assert (label, list(docs)) == ("records in news.json",
                                   [Doc("u1", "b", "t", "u1", metadata={"head": "h"})])
    _, docs = load_corpus(path, fields={"preset": "multihop-rag", "title": "head"})
    assert list(docs) == [Doc("u1", "b", "h", "u1", metadata={"title": "t"})]
    _, docs = load_corpus(path, fields={"text": "body", "id": "url"})
    assert [d.id for d in docs] == ["u1"]


def test_resolve_fields() -> None:
    assert resolve_fields({"preset": "multihop-rag"}) == MULTIHOP_RAG_FIELDS
    assert resolve_fields({"text": "body"}) == FieldMap(text="body")
    with pytest.raises(PursuitError, match="unknown field preset 'nope'; presets: multihop-rag"):
        resolve_fields({"preset": "nope"})


def test_folder_and_single_file(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# Alpha\nbody", encoding="utf-8")
    label, docs = load_corpus(tmp_path / "notes")
    assert label == f"folder {tmp_path / 'notes'}"
    assert [(d.id, d.title) for d in docs] == [("a.md", "Alpha")]
    label, docs = load_corpus(tmp_path / "notes" / "a.md")
    assert (label, [(d.id, d.text) for d in docs]) == ("file a.md", [("a.md", "# Alpha\nbody")])


def test_pydocs_source_is_lazy_demo_corpus() -> None:
    label, docs = load_corpus("pydocs")
    assert label.startswith("the Python 3.")
    assert next(iter(docs)).id == "topic:assert"


def test_errors_list_accepted_kinds(tmp_path: Path) -> None:
    with pytest.raises(PursuitError) as err:
        load_corpus(tmp_path / "missing")
    assert str(err.value) == (f"cannot read corpus '{tmp_path / 'missing'}': no such file or "
                              f"folder. {ACCEPTED}.")
    (tmp_path / "data.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(PursuitError, match=r"unknown file type '\.csv'\. SOURCE may be 'pydocs'"):
        load_corpus(tmp_path / "data.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PursuitError, match="the folder holds no .txt/.md/.markdown/.html/.htm "
                                           "files and no corpus.jsonl"):
        load_corpus(tmp_path / "empty")
    with pytest.raises(PursuitError, match="a field map applies to .json/.jsonl records only, "
                                           "not to pydocs; drop --field"):
        load_corpus("pydocs", fields={"text": "body"})


@pytest.mark.data
def test_real_sources(shared_data: Path) -> None:
    label, docs = load_corpus(shared_data / "beir-scifact")
    assert (label, sum(1 for _ in docs)) == ("BEIR corpus beir-scifact", 5183)
    _, docs = load_corpus(shared_data / "multihop-rag" / "corpus.json",
                          fields={"preset": "multihop-rag"})
    assert sum(1 for _ in docs) == 609
