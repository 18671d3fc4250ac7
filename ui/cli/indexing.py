"""Building indexes from the command line: sources, encoders, progress."""

from __future__ import annotations

from collections.abc import Mapping
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


def build_index(source: str, out: Path, *, settings: Settings, dense: bool = True,
                fields: Mapping[str, str] | None = None,
                console: Console | None = None) -> SearchIndex:
    """Read ``source`` and build a complete index into ``out``.

    Example:
        >>> build_index("pydocs", Path("demo-index"), settings=load_settings())  # doctest: +SKIP
    """
    label, docs = load_corpus(source, fields=fields or None)
    encoder = make_encoder(settings.encoder, dtype=settings.dtype) if dense else None
    if console:
        what = f"BM25 + dense ({settings.encoder}, {settings.factory})" if dense else "BM25"
        console.print(f"Indexing {label} with {what} into {out}")
    return SearchIndex.build(docs, out, source=source, encoder=encoder, factory=settings.factory,
                             show_progress=console is not None)


def add_documents(index_dir: Path, source: str, *, fields: Mapping[str, str] | None = None,
                  console: Console | None = None) -> SearchIndex:
    """Add the documents of ``source`` to the index at ``index_dir``, with its own encoder."""
    index = SearchIndex.open(index_dir)
    encoder = encoder_for(index) if index.vectors is not None else None
    _, docs = load_corpus(source, fields=fields or None)
    return index.add(docs, encoder=encoder, show_progress=console is not None)
