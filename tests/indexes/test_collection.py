"""Index directories: build, open, add, delete, and what damage looks like."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.errors import IndexError_
from pursuit.indexes.manifest import corpus_hash
from pursuit.indexes.records import Doc
from pursuit.retrievers.encoders import KeywordEncoder
from pursuit.retrievers.registry import index_stages

VOCAB = ["tide", "moon", "ocean", "volcano", "lava", "python", "snake", "code"]
DOCS = [
    Doc("d1", "The moon pulls the ocean and makes the tide.", title="Tides"),
    Doc("d2", "Lava flows from a volcano during an eruption.", title="Volcanoes"),
    Doc("d3", "A python is a large snake.", title="Snakes"),
    Doc("d4", "Python code is read more often than it is written.", title="Code"),
]


def _build(path: Path, docs: list[Doc] = DOCS) -> SearchIndex:
    return SearchIndex.build(docs, path, source="fixture", encoder=KeywordEncoder(VOCAB))


def _ids(index: SearchIndex, stage: str, query: str) -> list[str]:
    return index_stages(index)[stage]().search(query).doc_ids()


def test_build_writes_a_complete_directory_with_its_manifest(tmp_path: Path) -> None:
    with _build(tmp_path / "idx") as index:
        names = sorted(p.name for p in (tmp_path / "idx").iterdir())
        assert names == ["bm25", "dense", "docs.sqlite", "manifest.json"]
        raw = json.loads((tmp_path / "idx" / "manifest.json").read_text())
        assert raw["format_version"] == 1
        assert raw["n_docs"] == 4 and raw["source"] == "fixture"
        assert raw["corpus_sha256"] == corpus_hash(DOCS)
        assert raw["components"]["dense"]["encoder"]["model_id"] == KeywordEncoder(VOCAB).model_id
        assert raw["components"]["dense"]["vectors"]["factory"] == "Flat"
        assert {"numpy", "bm25s", "faiss-cpu", "python"} <= set(raw["packages"])
        assert _ids(index, "bm25", "volcano lava")[0] == "d2"
        assert _ids(index, "dense", "snake")[0] == "d3"
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no staging folder left


def test_an_interrupted_build_leaves_the_previous_index_intact(tmp_path: Path) -> None:
    _build(tmp_path / "idx").close()
    before = (tmp_path / "idx" / "manifest.json").read_text()

    def failing() -> Iterator[Doc]:
        yield DOCS[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SearchIndex.build(failing(), tmp_path / "idx", source="other", encoder=KeywordEncoder(VOCAB))
    assert (tmp_path / "idx" / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]
    with SearchIndex.open(tmp_path / "idx") as index:
        assert len(index.store) == 4


def test_add_and_delete_keep_every_component_in_step(tmp_path: Path) -> None:
    index = _build(tmp_path / "idx", DOCS[:3])
    new = Doc("d4b", "Snake case is how python code names things.", title="Style")
    index = index.add([new], encoder=KeywordEncoder(VOCAB))
    assert index.manifest.n_docs == 4
    assert index.manifest.corpus_sha256 == corpus_hash([*DOCS[:3], new])
    assert _ids(index, "bm25", "code")[0] == "d4b"
    assert _ids(index, "dense", "code")[0] == "d4b"
    index = index.delete(["d3"])
    assert "d3" not in _ids(index, "bm25", "python snake")
    assert "d3" not in _ids(index, "dense", "python snake")
    assert index.manifest.n_docs == 3
    with pytest.raises(IndexError_, match="pass that encoder"):
        index.add([Doc("d9", "lava")])
    index.close()


def test_opening_with_another_encoder_names_the_rebuild_command(tmp_path: Path) -> None:
    _build(tmp_path / "idx").close()
    with pytest.raises(IndexError_) as err:
        SearchIndex.open(tmp_path / "idx", encoder=KeywordEncoder(["other", "words"]))
    assert "was built with the encoder" in str(err.value)
    assert f"pursuit index fixture --out {tmp_path / 'idx'}" in str(err.value)


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "manifest.json").write_text("{not json"), "manifest.json is damaged"),
    (lambda p: (p / "manifest.json").unlink(), "manifest.json is missing"),
    (lambda p: __import__("shutil").rmtree(p / "bm25"), "bm25 is missing"),
])
def test_a_damaged_index_is_a_clear_error(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    _build(tmp_path / "idx").close()
    damage(tmp_path / "idx")
    with pytest.raises(IndexError_, match=message) as err:
        SearchIndex.open(tmp_path / "idx")
    assert "pursuit index" in str(err.value)


def test_refuses_to_replace_a_folder_that_is_not_an_index(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(IndexError_, match="is not a pursuit index"):
        _build(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
