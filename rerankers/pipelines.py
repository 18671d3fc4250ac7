"""Pipelines over an index: every stage a pipeline text can name, first stages and rerankers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.protocols import Encoder
from pursuit.rerankers.registry import reranker_stages
from pursuit.retrievers.pipeline_parser import parse_pipeline
from pursuit.retrievers.registry import index_stages, needs_vectors
from pursuit.retrievers.stage import Stage


def pipelines(index: SearchIndex, texts: Mapping[str, str], *,
                   filter: DocFilter | None = None, fetch_docs: bool = False,
                   encoder: Encoder | None = None, dtype: str = "auto") -> dict[str, Stage]:
    """Parse named pipelines whose names resolve over ``index``, sharing one loaded encoder.

    ``dtype`` is what loaded models compute in (the settings' ``dtype``), unless a
    reranker names its own.
    """
    registry = index_stages(index, filter=filter, fetch_docs=fetch_docs, encoder=encoder,
                            dtype=dtype)
    registry |= reranker_stages(index.store, dtype=dtype)
    return {name: parse_pipeline(text, registry) for name, text in texts.items()}


def pipeline(index: SearchIndex, text: str, *, filter: DocFilter | None = None,
             fetch_docs: bool = False, dtype: str = "auto") -> Stage:
    """Parse ``text`` into a stage whose names resolve over ``index``.

    Example::

        >>> with pursuit.SearchIndex.open("demo-index") as index:  # doctest: +SKIP
        ...     hits = pursuit.pipeline(index, "bm25%100 >> icr%10").search("read a file")
    """
    return pipelines(index, {"_": text}, filter=filter, fetch_docs=fetch_docs,
                     dtype=dtype)["_"]


@contextmanager
def open_pipeline(index_dir: Path, text: str, *, filter: DocFilter | None = None,
                  fetch_docs: bool = False, dtype: str = "auto") -> Iterator[Stage]:
    """Open ``index_dir``, yield the parsed pipeline, close the index afterwards.

    The index's vectors are loaded only when the pipeline has a stage that reads them.
    """
    with SearchIndex.open(index_dir, vectors=needs_vectors(text)) as index:
        yield pipeline(index, text, filter=filter, fetch_docs=fetch_docs, dtype=dtype)
