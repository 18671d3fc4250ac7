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
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "idx"]  # no staging folder left


def test_an_interrupted_build_leaves_the_previous_index_intact(tmp_path: Path) -> None:
    _build(tmp_path / "idx").close()
    before = (tmp_path / "idx" / "manifest.json").read_text()

    def failing() -> Iterator[Doc]:
        yield DOCS[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SearchIndex.build(failing(), tmp_path / "idx", source="other", encoder=KeywordEncoder(VOCAB))
    assert (tmp_path / "idx" / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "idx"]
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


def _files(path: Path) -> dict[str, tuple[int, int]]:
    """Each file under ``path`` -> (inode, mtime in ns): any rewrite changes one of them."""
    return {str(f.relative_to(path)): (f.stat().st_ino, f.stat().st_mtime_ns)
            for f in sorted(path.rglob("*")) if f.is_file()}


def test_an_index_without_vectors_gets_them_added_once(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    index = SearchIndex.build(DOCS, path, source="fixture")
    assert sorted(p.name for p in path.iterdir()) == ["bm25", "docs.sqlite", "manifest.json"]
    assert sorted(index.manifest.components) == ["bm25", "store"]
    assert not index.has_vectors and index.vectors is None
    assert _ids(index, "bm25", "volcano lava")[0] == "d2"
    with pytest.raises(IndexError_) as err:
        index_stages(index)["dense"]()
    assert f"has no dense vectors, so 'dense' cannot run; add them with: pursuit add-vectors " \
           f"{path}" in str(err.value)

    index = index.add_vectors(KeywordEncoder(VOCAB))
    assert sorted(p.name for p in path.iterdir()) == ["bm25", "dense", "docs.sqlite",
                                                      "manifest.json"]
    raw = json.loads((path / "manifest.json").read_text())
    assert raw["components"]["dense"]["encoder"]["model_id"] == KeywordEncoder(VOCAB).model_id
    assert raw["components"]["dense"]["vectors"]["count"] == 4
    assert raw["corpus_sha256"] == corpus_hash(DOCS) and raw["n_docs"] == 4
    assert _ids(index, "dense", "snake")[0] == "d3"
    assert _ids(index, "bm25", "volcano lava")[0] == "d2"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "idx"]  # no staging folder left

    dense_files = _files(path / "dense")
    assert index.add_vectors(KeywordEncoder(VOCAB)) is index  # same encoder: nothing encoded
    assert _files(path / "dense") == dense_files
    other = KeywordEncoder(["snake", "lava"])
    with pytest.raises(IndexError_, match=f"pursuit add-vectors {path} --encoder "
                                          f"{other.model_id} --replace"):
        index.add_vectors(other)
    index = index.add_vectors(other, replace=True)
    assert index.encoder_config is not None
    assert index.encoder_config["model_id"] == other.model_id and index.vectors.dim == 2
    assert _ids(index, "dense", "lava")[0] == "d2"
    index.close()


class _InterruptedEncoder(KeywordEncoder):
    """The keyword encoder, stopped (as by Ctrl-C) while encoding the documents."""

    def encode_document(self, texts, *, show_progress=False):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt


def test_an_interrupted_add_vectors_leaves_the_index_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    SearchIndex.build(DOCS, path, source="fixture").close()
    before = _files(path)
    index = SearchIndex.open(path)
    with pytest.raises(KeyboardInterrupt):
        index.add_vectors(_InterruptedEncoder(VOCAB))
    index.close()
    assert _files(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "idx"]
    with SearchIndex.open(path) as index:
        assert not index.has_vectors and _ids(index, "bm25", "python code")[0] == "d4"


def test_add_and_delete_on_an_index_without_vectors_keep_it_without(tmp_path: Path) -> None:
    index = SearchIndex.build(DOCS[:3], tmp_path / "idx", source="fixture")
    index = index.add([DOCS[3]])
    assert _ids(index, "bm25", "code")[0] == "d4" and index.manifest.n_docs == 4
    index = index.delete(["d1"])
    assert sorted(index.manifest.components) == ["bm25", "store"]
    assert not (tmp_path / "idx" / "dense").exists()
    with pytest.raises(IndexError_, match=f"built without dense vectors; add them with: "
                                          f"pursuit add-vectors {tmp_path / 'idx'} --encoder"):
        index.add([Doc("d9", "lava")], encoder=KeywordEncoder(VOCAB))
    index = index.add_vectors(KeywordEncoder(VOCAB))
    assert _ids(index, "dense", "code")[0] == "d4"
    assert "d1" not in _ids(index, "dense", "moon tide")
    index.close()


def test_opened_without_vectors_they_stay_on_disk_and_in_step(tmp_path: Path) -> None:
    _build(tmp_path / "idx", DOCS[:3]).close()
    index = SearchIndex.open(tmp_path / "idx", vectors=False)
    assert index.has_vectors and index.vectors is None
    assert _ids(index, "bm25", "volcano")[0] == "d2"
    with pytest.raises(IndexError_, match="opened without loading its vectors"):
        index_stages(index)["dense"]()
    index = index.add([DOCS[3]], encoder=KeywordEncoder(VOCAB))  # re-opened with vectors
    assert _ids(index, "dense", "code")[0] == "d4"
    index.close()
    index = SearchIndex.open(tmp_path / "idx", vectors=False).delete(["d4"])
    assert index.vectors is not None and len(index.vectors) == 3
    index.close()


def test_a_manifest_written_before_add_vectors_existed_still_opens(tmp_path: Path) -> None:
    # The fields and values a BM25-only build (pursuit index --no-dense) wrote before
    # indexes could gain vectors later; only the BM25 config is taken from a fresh build.
    path = tmp_path / "idx"
    SearchIndex.build(DOCS, path, source="fixture").close()
    bm25 = json.loads((path / "manifest.json").read_text())["components"]["bm25"]
    old = {"source": "fixture", "corpus_sha256": corpus_hash(DOCS), "n_docs": 4,
           "components": {"store": {"file": "docs.sqlite"}, "bm25": bm25},
           "packages": {"python": "3.11.9", "numpy": "2.1.0", "bm25s": "0.2.6"},
           "created_at": "2025-01-02T03:04:05+00:00",
           "updated_at": "2025-01-02T03:04:05+00:00", "format_version": 1}
    (path / "manifest.json").write_text(json.dumps(old, indent=2))
    index = SearchIndex.open(path)
    assert not index.has_vectors and _ids(index, "bm25", "snake")[0] == "d3"
    index = index.add_vectors(KeywordEncoder(VOCAB))
    assert index.manifest.created_at == old["created_at"]
    assert index.manifest.updated_at != old["updated_at"]
    assert _ids(index, "dense", "snake")[0] == "d3"
    index.close()
