"""Building indexes from the command line: sources, encoders, progress."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from rich.console import Console

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.protocols import Encoder
from pursuit.indexes.sources.corpus import load_corpus
from pursuit.retrievers.encoders import SentenceTransformerEncoder
from pursuit.retrievers.llmql.encoder import METADATA_FILE, LLMEncoder
from pursuit.retrievers.registry import encoder_for
from pursuit.ui.settings import Settings


def make_encoder(name: str, *, dtype: str = "auto") -> Encoder:
    """The encoder ``name`` means: an LLM-QL checkpoint folder (it holds
    ``pursuit-llmql.json``) becomes an :class:`LLMEncoder`, anything else a
    sentence-transformers model; either computes in ``dtype``."""
    if (Path(name).expanduser() / METADATA_FILE).is_file():
        return LLMEncoder(str(Path(name).expanduser().resolve()), dtype=dtype)
    return SentenceTransformerEncoder(name, dtype=dtype)


def build_index(source: str, out: Path, *, settings: Settings, vectors: bool = True,
                fields: Mapping[str, str] | None = None, console: Console | None = None,
                wait: bool = True) -> SearchIndex:
    """Read ``source`` and build an index into ``out``: documents, BM25 and, unless
    ``vectors`` is false, dense vectors from ``settings.encoder`` (:func:`add_vectors` adds
    them later).

    Example:
        >>> build_index("pydocs", Path("demo-index"), settings=load_settings())  # doctest: +SKIP
    """
    label, docs = load_corpus(source, fields=fields or None)
    encoder = make_encoder(settings.encoder, dtype=settings.dtype) if vectors else None
    if console:
        what = f"BM25 + dense ({settings.encoder}, {settings.factory})" if vectors else "BM25"
        console.print(f"Indexing {label} with {what} into {out}")
    return SearchIndex.build(docs, out, source=source, encoder=encoder, factory=settings.factory,
                             show_progress=console is not None, wait=wait,
                             on_wait=say_waiting(console))


def add_documents(index_dir: Path, source: str, *, fields: Mapping[str, str] | None = None,
                  console: Console | None = None, wait: bool = True) -> SearchIndex:
    """Add the documents of ``source`` to the index at ``index_dir``, encoding them with its
    own encoder when it has vectors (an index without them stays without)."""
    index = SearchIndex.open(index_dir, vectors=False)  # add() updates them from disk
    encoder = encoder_for(index) if index.has_vectors else None
    _, docs = load_corpus(source, fields=fields or None)
    return index.add(docs, encoder=encoder, show_progress=console is not None, wait=wait,
                     on_wait=say_waiting(console))


def add_vectors(index_dir: Path, *, settings: Settings, replace: bool = False,
                console: Console | None = None, wait: bool = True) -> SearchIndex:
    """Encode the documents of the index at ``index_dir`` with ``settings.encoder`` and add
    the vectors (FAISS ``settings.factory``) to it; returns the re-opened index.

    Nothing is encoded when the index already has vectors from that encoder.

    Raises:
        IndexError_: the index has vectors from another encoder and ``replace`` is false.

    Example:
        >>> add_vectors(Path("my-index"), settings=load_settings())  # doctest: +SKIP
    """
    index = SearchIndex.open(index_dir, vectors=False)
    encoder = make_encoder(settings.encoder)
    if console and not index.has_vectors_of(encoder):
        console.print(f"Encoding {index.manifest.n_docs:,} documents with {settings.encoder} "
                      f"({settings.factory}) into {index_dir}")
    return index.add_vectors(encoder, factory=settings.factory, replace=replace,
                             show_progress=console is not None, wait=wait,
                             on_wait=say_waiting(console))


def say_waiting(console: Console | None) -> Callable[[str], None] | None:
    """What a writer that must wait for another one prints (the message says whom)."""
    if console is None:
        return None
    return lambda message: console.print(f"[yellow]{message}[/]")
