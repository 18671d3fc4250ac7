"""An index directory: document store, BM25 index, dense vectors and a manifest.

Layout of ``DIR``::

    DIR/manifest.json    how the index was built (see manifest.py)
    DIR/docs.sqlite      the document store (ids, texts, metadata, timestamps)
    DIR/bm25/            the BM25 index (bm25s arrays, memory-mapped on load)
    DIR/dense/           the vector index (FAISS), absent when built without an encoder

The manifest's ``components`` say which parts an index holds: an index built without an
encoder has no ``dense`` entry, and :meth:`SearchIndex.add_vectors` adds one later. Opening
with ``vectors=False`` skips loading the vectors, for work that never reads them.

Every change is copy-on-write: a build, an addition or a deletion, adding vectors, writes a
complete new directory beside ``DIR`` and renames it into place only when it is finished, so
an interrupted run leaves the previous index intact.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pursuit.indexes.bm25 import BM25Index
from pursuit.indexes.docstore import DocStore
from pursuit.indexes.errors import IndexError_, PursuitError
from pursuit.indexes.locking import IndexLock
from pursuit.indexes.manifest import (
    MANIFEST_NAME,
    Manifest,
    add_vectors_hint,
    corpus_hash,
    rebuild_hint,
)
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
        vectors: The vector index, or ``None`` when the index has no dense part or was
            opened with ``vectors=False`` (:attr:`has_vectors` tells the two apart).
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
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ) -> SearchIndex:
        """Build an index from ``docs`` into ``out``, replacing what was there only at the end.

        Args:
            docs: The documents (ids must be unique).
            out: The index directory to create or replace.
            source: What the documents were read from, recorded in the manifest.
            encoder: Encoder for the dense part; ``None`` builds the store and BM25 only,
                which takes seconds where encoding can take minutes (:meth:`add_vectors`
                adds the dense part later).
            factory: FAISS factory string of the vector index (``Flat``, ``HNSW32``, ...).
            bm25_params: Keyword arguments for :meth:`BM25Index.build` (``k1``, ``b``, ...).
            show_progress: Show progress bars while encoding.
            wait: Wait while another process writes ``out``; ``False`` raises
                :class:`~pursuit.indexes.locking.IndexBusyError` instead.
            on_wait: Told, once, whom this build waits for.

        Example:
            >>> index = SearchIndex.build(docs, "my-index", source="notes/",
            ...                           encoder=SentenceTransformerEncoder())  # doctest: +SKIP
        """
        out = Path(out)
        _check_replaceable(out)
        with IndexLock(out, wait=wait, on_wait=on_wait), _staging(out) as tmp:
            store = DocStore.create(tmp / STORE_FILE)
            try:
                store.add(docs)
                if len(store) == 0:
                    raise IndexError_(f"{source} holds no documents, so there is nothing to "
                                      "index; check the path (and --field for JSON records)")
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
            show_progress: bool = False, wait: bool = True,
            on_wait: Callable[[str], None] | None = None) -> SearchIndex:
        """Add documents; returns the re-opened index. An index with vectors needs its encoder.

        Writers take turns (``wait``, ``on_wait``: see :meth:`build`), and each starts from
        the index as the previous one left it, so no writer's documents are lost.
        """
        new_docs = list(docs)
        self._check_encoder(encoder, required=self.has_vectors)

        def change(tmp: Path, store: DocStore, current: Manifest) -> None:
            rows = store.add(new_docs)
            if "dense" in current.components and encoder is None:
                raise IndexError_(f"{self.path} gained dense vectors while this change waited; "
                                  "add the documents again with its encoder")
            if "dense" in current.components and encoder is not None and new_docs:
                vectors = FaissIndex.load(tmp / DENSE_DIR, mmap=False)
                texts = [d.contents() for d in new_docs]
                vectors.add(encoder.encode_document(texts, show_progress=show_progress), rows)
                _replace_dir(tmp / DENSE_DIR, vectors.save)

        return self._rewrite(change, encoder, wait, on_wait)

    def delete(self, ids: Sequence[str], *, wait: bool = True,
               on_wait: Callable[[str], None] | None = None) -> SearchIndex:
        """Delete documents by id; returns the re-opened index. Unknown ids are an error."""

        def change(tmp: Path, store: DocStore, current: Manifest) -> None:
            rows = store.delete(ids)
            if "dense" in current.components:
                vectors = FaissIndex.load(tmp / DENSE_DIR, mmap=False)
                vectors.remove(rows)
                _replace_dir(tmp / DENSE_DIR, vectors.save)

        return self._rewrite(change, None, wait, on_wait)

    def add_vectors(self, encoder: Encoder, *, factory: str = "Flat", replace: bool = False,
                    show_progress: bool = False, wait: bool = True,
                    on_wait: Callable[[str], None] | None = None) -> SearchIndex:
        """Encode every document and add the dense part; returns the re-opened index.

        The index is copied beside itself, the vectors and the manifest are written into the
        copy, and the copy is renamed into place at the end, so an interrupted run leaves
        the index as it was. Nothing is encoded when the index already holds vectors built
        with ``encoder``: the index is returned as it is.

        Args:
            encoder: The document encoder; ``dense`` stages later encode queries with it.
            factory: FAISS factory string of the vector index (``Flat``, ``HNSW32``, ...).
            replace: Re-encode an index whose vectors were built with another encoder.
            show_progress: Show progress bars while encoding.

        Raises:
            IndexError_: the index has vectors from another encoder and ``replace`` is false.

        Example:
            >>> index = SearchIndex.open("my-index").add_vectors(
            ...     SentenceTransformerEncoder())  # doctest: +SKIP
        """
        if self.has_vectors_of(encoder):
            if self.vectors is not None:
                return self
            self.close()  # opened with vectors=False: hand back one that has them loaded
            return type(self).open(self.path, encoder=encoder)
        built = self.encoder_config
        if built is not None and not replace:
            raise IndexError_(f"{self.path} already has vectors built with {built['model_id']} "
                              f"({built['dim']}-d); to re-encode it with {encoder.model_id}: "
                              f"pursuit add-vectors {self.path} --encoder {encoder.model_id} "
                              f"--replace")
        with self._locked_copy(wait, on_wait) as (tmp, current):
            shutil.rmtree(tmp / DENSE_DIR, ignore_errors=True)
            store = DocStore.open(tmp / STORE_FILE, readonly=True)
            try:
                dense = _write_vectors(tmp, store, encoder, factory, show_progress)
            finally:
                store.close()
            components = {**current.components, "dense": dense}
            current.updated(components=components).write(tmp)
        self.close()
        return type(self).open(self.path, encoder=encoder)

    @contextmanager
    def _locked_copy(self, wait: bool, on_wait: Callable[[str], None] | None
                     ) -> Iterator[tuple[Path, Manifest]]:
        """Under the index's writer lock, a staging copy of the index and its manifest as the
        last writer left them (which may be newer than what this object opened); the copy
        replaces the index when the block ends without an error."""
        with IndexLock(self.path, wait=wait, on_wait=on_wait), _staging(self.path) as tmp:
            current = Manifest.read(self.path)
            shutil.copytree(self.path, tmp, dirs_exist_ok=True)
            yield tmp, current

    def _rewrite(self, change: Any, encoder: Encoder | None, wait: bool,
                 on_wait: Callable[[str], None] | None) -> SearchIndex:
        with self._locked_copy(wait, on_wait) as (tmp, current):
            store = DocStore.open(tmp / STORE_FILE)
            try:
                change(tmp, store, current)
                if len(store) == 0:
                    raise IndexError_(f"this would leave {self.path} with no documents, and an "
                                      "index needs at least one; to remove the whole index, "
                                      f"delete the folder {self.path}")
                bm25_params = dict(current.components["bm25"].get("params", {}))
                _replace_dir(tmp / BM25_DIR, _bm25_of(store, bm25_params).save)
                manifest = current.updated(corpus_sha256=_store_hash(store),
                                           n_docs=len(store))
            finally:
                store.close()
            manifest.write(tmp)
        self.close()
        return type(self).open(self.path, encoder=encoder)

    # Opening ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, encoder: Encoder | None = None, mmap: bool = True,
             vectors: bool = True) -> SearchIndex:
        """Open an index directory, checking it is whole and matches ``encoder``.

        Args:
            path: The index directory.
            encoder: When given, checked against the encoder the vectors were built with.
            mmap: Memory-map the BM25 and vector arrays instead of reading them.
            vectors: Load the dense vectors when the index has them. ``False`` leaves them on
                disk (``vectors`` is then ``None``) for work that never reads them, such as a
                BM25-only pipeline; :meth:`add` and :meth:`delete` still keep them in step.

        Raises:
            IndexError_: damaged or incomplete index, or an encoder other than the one the
                vectors were built with; the message names the rebuild command.
        """
        path = Path(path)
        manifest = Manifest.read(path)
        has_vectors = "dense" in manifest.components
        for name in (STORE_FILE, BM25_DIR) + ((DENSE_DIR,) if has_vectors else ()):
            if not (path / name).exists():
                raise IndexError_(f"{path / name} is missing, the index is damaged; "
                                  f"{rebuild_hint(path, manifest.source)}")
        store = DocStore.open(path / STORE_FILE, readonly=True)
        held = len(store)
        if held != manifest.n_docs:
            store.close()
            raise IndexError_(f"{path / STORE_FILE} holds {held} documents but the manifest "
                              f"says {manifest.n_docs}; the index is damaged; "
                              f"{rebuild_hint(path, manifest.source)}")
        bm25 = BM25Index.load(path / BM25_DIR, mmap=mmap)
        dense = FaissIndex.load(path / DENSE_DIR, mmap=mmap) if has_vectors and vectors else None
        index = cls(path, manifest, store, bm25, dense)
        index._check_encoder(encoder, required=False)
        return index

    @property
    def has_vectors(self) -> bool:
        """Whether the index holds dense vectors (loaded or not), as its manifest says."""
        return "dense" in self.manifest.components

    def has_vectors_of(self, encoder: Encoder) -> bool:
        """Whether the index holds dense vectors built with ``encoder`` (same model and size)."""
        built = self.encoder_config
        return built is not None and (built["model_id"], built["dim"]) == (encoder.model_id,
                                                                             encoder.dim)

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
            raise IndexError_(f"{self.path} was built without dense vectors; "
                              f"{add_vectors_hint(self.path, encoder.model_id)}")
        if not self.has_vectors_of(encoder):
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
        components["dense"] = _write_vectors(tmp, store, encoder, factory, show_progress)
    return components


def _write_vectors(tmp: Path, store: DocStore, encoder: Encoder, factory: str,
                   show_progress: bool) -> dict[str, Any]:
    """Encode every live document of ``store`` into ``tmp/dense``; its manifest entry."""
    docs = list(store.iter_docs())
    rows = [row for row, _ in docs]
    vectors = encoder.encode_document([d.contents() for _, d in docs],
                                      show_progress=show_progress)
    index = FaissIndex(encoder.dim, factory=factory,
                       metric="ip" if encoder.similarity in ("cosine", "dot") else "l2")
    index.add(vectors, np.asarray(rows, dtype=np.int64))
    index.save(tmp / DENSE_DIR)
    return {"dir": DENSE_DIR, "encoder": dict(encoder.describe()),
            "vectors": dict(index.describe())}


def _store_hash(store: DocStore) -> str:
    return corpus_hash(doc for _, doc in store.iter_docs())


def _replace_dir(path: Path, save: Any) -> None:
    shutil.rmtree(path, ignore_errors=True)
    save(path)


def _check_replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise IndexError_(f"cannot write an index to {out}: it is a file, and an index is a "
                          "folder; choose another --out path")
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
            if isinstance(exc, PursuitError) and exc.args and isinstance(exc.args[0], str):
                # The user knows the index, not its staging copy: name the index.
                exc.args = (exc.args[0].replace(self.tmp.name, self.out.name), *exc.args[1:])
            return
        old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
        if self.out.exists():
            os.rename(self.out, old)
        os.rename(self.tmp, self.out)
        shutil.rmtree(old, ignore_errors=True)
