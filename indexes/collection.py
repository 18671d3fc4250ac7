"""An index directory: document store, BM25 index, dense vectors and a manifest.

Layout of ``DIR``::

    DIR/manifest.json    how the index was built (see manifest.py)
    DIR/docs.sqlite      the document store (ids, texts, metadata, timestamps)
    DIR/bm25/            the BM25 index (bm25s arrays, memory-mapped on load)
    DIR/dense/           the vector index (FAISS), absent when built without an encoder

Every change is copy-on-write: a build, an addition or a deletion writes a complete new
directory beside ``DIR`` and renames it into place only when it is finished, so an
interrupted run leaves the previous index intact.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pursuit.indexes.bm25 import BM25Index
from pursuit.indexes.docstore import DocStore
from pursuit.indexes.errors import IndexError_
from pursuit.indexes.manifest import MANIFEST_NAME, Manifest, corpus_hash, rebuild_hint
from pursuit.indexes.protocols import Encoder
from pursuit.indexes.records import Doc
from pursuit.indexes.vectors.store import FaissIndex

STORE_FILE, BM25_DIR, DENSE_DIR = "docs.sqlite", "bm25", "dense"


class SearchIndex:
    """An opened index directory. Build with :meth:`build`, open with :meth:`open`.

    Attributes:
        path: The index directory.
        manifest: Its manifest.
        store: The document store.
        bm25: The BM25 index.
        vectors: The vector index, or ``None`` when the index has no dense part.
    """

    def __init__(self, path: Path, manifest: Manifest, store: DocStore, bm25: BM25Index,
                 vectors: FaissIndex | None) -> None:
        self.path, self.manifest, self.store = path, manifest, store
        self.bm25, self.vectors = bm25, vectors

    # Building ---------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        docs: Iterable[Doc],
        out: str | Path,
        *,
        source: str,
        encoder: Encoder | None = None,
        factory: str = "Flat",
        bm25_params: Mapping[str, Any] | None = None,
        show_progress: bool = False,
    ) -> SearchIndex:
        """Build an index from ``docs`` into ``out``, replacing what was there only at the end.

        Args:
            docs: The documents (ids must be unique).
            out: The index directory to create or replace.
            source: What the documents were read from, recorded in the manifest.
            encoder: Encoder for the dense part; ``None`` builds BM25 only.
            factory: FAISS factory string of the vector index (``Flat``, ``HNSW32``, ...).
            bm25_params: Keyword arguments for :meth:`BM25Index.build` (``k1``, ``b``, ...).
            show_progress: Show progress bars while encoding.

        Example:
            >>> index = SearchIndex.build(docs, "my-index", source="notes/",
            ...                           encoder=SentenceTransformerEncoder())  # doctest: +SKIP
        """
        out = Path(out)
        _check_replaceable(out)
        with _staging(out) as tmp:
            store = DocStore.create(tmp / STORE_FILE)
            try:
                store.add(docs)
                components = {"store": {"file": STORE_FILE}}
                components.update(_write_components(tmp, store, encoder, factory,
                                                    dict(bm25_params or {}), show_progress))
                manifest = Manifest(source=source, corpus_sha256=_store_hash(store),
                                    n_docs=len(store), components=components)
            finally:
                store.close()
            manifest.write(tmp)
        return cls.open(out, encoder=encoder)

    def add(self, docs: Iterable[Doc], *, encoder: Encoder | None = None,
            show_progress: bool = False) -> SearchIndex:
        """Add documents; returns the re-opened index. An index with vectors needs its encoder."""
        new_docs = list(docs)
        self._check_encoder(encoder, required=self.vectors is not None)

        def change(tmp: Path, store: DocStore) -> None:
            rows = store.add(new_docs)
            if self.vectors is not None and encoder is not None and new_docs:
                vectors = FaissIndex.load(tmp / DENSE_DIR, mmap=False)
                texts = [d.contents() for d in new_docs]
                vectors.add(encoder.encode_document(texts, show_progress=show_progress), rows)
                _replace_dir(tmp / DENSE_DIR, vectors.save)

        return self._rewrite(change, encoder)

    def delete(self, ids: Sequence[str]) -> SearchIndex:
        """Delete documents by id; returns the re-opened index. Unknown ids are an error."""

        def change(tmp: Path, store: DocStore) -> None:
            rows = store.delete(ids)
            if self.vectors is not None:
                vectors = FaissIndex.load(tmp / DENSE_DIR, mmap=False)
                vectors.remove(rows)
                _replace_dir(tmp / DENSE_DIR, vectors.save)

        return self._rewrite(change, None)

    def _rewrite(self, change: Any, encoder: Encoder | None) -> SearchIndex:
        with _staging(self.path) as tmp:
            shutil.copytree(self.path, tmp, dirs_exist_ok=True)
            store = DocStore.open(tmp / STORE_FILE)
            try:
                change(tmp, store)
                bm25_params = dict(self.manifest.components["bm25"].get("params", {}))
                _replace_dir(tmp / BM25_DIR, _bm25_of(store, bm25_params).save)
                manifest = self.manifest.updated(corpus_sha256=_store_hash(store),
                                                 n_docs=len(store))
            finally:
                store.close()
            manifest.write(tmp)
        self.close()
        return type(self).open(self.path, encoder=encoder)

    # Opening ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, encoder: Encoder | None = None,
             mmap: bool = True) -> SearchIndex:
        """Open an index directory, checking it is whole and matches ``encoder``.

        Raises:
            IndexError_: damaged or incomplete index, or an encoder other than the one the
                vectors were built with; the message names the rebuild command.
        """
        path = Path(path)
        manifest = Manifest.read(path)
        for name in (STORE_FILE, BM25_DIR) + ((DENSE_DIR,) if "dense" in manifest.components else ()):
            if not (path / name).exists():
                raise IndexError_(f"{path / name} is missing, the index is damaged; "
                                  f"{rebuild_hint(path, manifest.source)}")
        store = DocStore.open(path / STORE_FILE, readonly=True)
        if len(store) != manifest.n_docs:
            store.close()
            raise IndexError_(f"{path / STORE_FILE} holds {len(store)} documents but the manifest "
                              f"says {manifest.n_docs}; the index is damaged; "
                              f"{rebuild_hint(path, manifest.source)}")
        bm25 = BM25Index.load(path / BM25_DIR, mmap=mmap)
        vectors = FaissIndex.load(path / DENSE_DIR, mmap=mmap) if "dense" in manifest.components else None
        index = cls(path, manifest, store, bm25, vectors)
        index._check_encoder(encoder, required=False)
        return index

    @property
    def encoder_config(self) -> Mapping[str, Any] | None:
        """The manifest's record of the encoder the vectors were built with."""
        dense = self.manifest.components.get("dense")
        return dense["encoder"] if dense else None

    def _check_encoder(self, encoder: Encoder | None, *, required: bool) -> None:
        built = self.encoder_config
        if encoder is None:
            if required:
                raise IndexError_(f"{self.path} has dense vectors built with "
                                  f"{built['model_id'] if built else '?'}; pass that encoder")
            return
        if built is None:
            raise IndexError_(f"{self.path} was built without dense vectors; rebuild it with an "
                              f"encoder: pursuit index {self.manifest.source} --out {self.path}")
        if encoder.model_id != built["model_id"] or encoder.dim != built["dim"]:
            raise IndexError_(
                f"{self.path} was built with the encoder {built['model_id']} ({built['dim']}-d), "
                f"not {encoder.model_id} ({encoder.dim}-d); open it with the same encoder or "
                f"rebuild it: pursuit index {self.manifest.source} --out {self.path} "
                f"--encoder {encoder.model_id}")

    def close(self) -> None:
        """Close the document store."""
        self.store.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bm25_of(store: DocStore, params: dict[str, Any]) -> BM25Index:
    rows, texts = [], []
    for row, doc in store.iter_docs():
        rows.append(row)
        texts.append(doc.contents())
    return BM25Index.build(texts, np.asarray(rows, dtype=np.int64), **params)


def _write_components(tmp: Path, store: DocStore, encoder: Encoder | None, factory: str,
                      bm25_params: dict[str, Any], show_progress: bool) -> dict[str, Any]:
    bm25 = _bm25_of(store, bm25_params)
    bm25.save(tmp / BM25_DIR)
    components: dict[str, Any] = {"bm25": {"dir": BM25_DIR, "params": bm25_params,
                                           "config": bm25.config}}
    if encoder is not None:
        docs = list(store.iter_docs())
        rows = [row for row, _ in docs]
        vectors = encoder.encode_document([d.contents() for _, d in docs],
                                          show_progress=show_progress)
        index = FaissIndex(encoder.dim, factory=factory,
                           metric="ip" if encoder.similarity in ("cosine", "dot") else "l2")
        index.add(vectors, np.asarray(rows, dtype=np.int64))
        index.save(tmp / DENSE_DIR)
        components["dense"] = {"dir": DENSE_DIR, "encoder": dict(encoder.describe()),
                               "vectors": dict(index.describe())}
    return components


def _store_hash(store: DocStore) -> str:
    return corpus_hash(doc for _, doc in store.iter_docs())


def _replace_dir(path: Path, save: Any) -> None:
    shutil.rmtree(path, ignore_errors=True)
    save(path)


def _check_replaceable(out: Path) -> None:
    if out.exists() and not (out / MANIFEST_NAME).exists() and any(out.iterdir()):
        raise IndexError_(f"refusing to write an index into {out}: it exists, is not empty and "
                          f"is not a pursuit index; choose another --out directory")


class _staging:
    """Context manager: a fresh directory beside ``out``, renamed onto ``out`` on success."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.tmp = out.with_name(f".{out.name}.building-{os.getpid()}")

    def __enter__(self) -> Path:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
        if self.out.exists():
            os.rename(self.out, old)
        os.rename(self.tmp, self.out)
        shutil.rmtree(old, ignore_errors=True)
