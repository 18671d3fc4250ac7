"""Turning a pipeline's textual form into stages over an index directory."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.protocols import Encoder
from pursuit.rerankers.registry import reranker_stages
from pursuit.retrievers.pipeline import parse_pipeline
from pursuit.retrievers.registry import index_stages, needs_vectors
from pursuit.retrievers.stage import Stage


def pipelines_over(index: SearchIndex, texts: Mapping[str, str], *,
                   filter: DocFilter | None = None, fetch_docs: bool = False,
                   encoder: Encoder | None = None) -> dict[str, Stage]:
    """Parse named pipelines whose names resolve over ``index``, sharing one loaded encoder."""
    registry = index_stages(index, filter=filter, fetch_docs=fetch_docs, encoder=encoder)
    registry |= reranker_stages(index.store)
    return {name: parse_pipeline(text, registry) for name, text in texts.items()}


def pipeline_over(index: SearchIndex, text: str, *, filter: DocFilter | None = None,
                  fetch_docs: bool = False) -> Stage:
    """Parse ``text`` into a stage whose names resolve over ``index``."""
    return pipelines_over(index, {"_": text}, filter=filter, fetch_docs=fetch_docs)["_"]


@contextmanager
def open_pipeline(index_dir: Path, text: str, *, filter: DocFilter | None = None,
                  fetch_docs: bool = False) -> Iterator[Stage]:
    """Open ``index_dir``, yield the parsed pipeline, close the index afterwards.

    The index's vectors are loaded only when the pipeline has a stage that reads them.
    """
    with SearchIndex.open(index_dir, vectors=needs_vectors(text)) as index:
        yield pipeline_over(index, text, filter=filter, fetch_docs=fetch_docs)
