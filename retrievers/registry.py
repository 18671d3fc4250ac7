"""The stages a pipeline's textual form can name, bound to one opened index.

``pursuit search`` and ``pursuit eval`` turn ``--pipeline "bm25%100 | dense%100"`` into
stages with :func:`pursuit.retrievers.pipeline_parser.parse_pipeline` and the registry built here.
Layers above add their own names (the rerankers) to the mapping this returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.errors import IndexError_
from pursuit.indexes.events.build import EVENTS_DIR, open_event_store
from pursuit.indexes.events.store import EventStore
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.manifest import add_vectors_hint
from pursuit.indexes.protocols import Encoder
from pursuit.indexes.vectors.store import FaissIndex
from pursuit.retrievers.bm25 import BM25Retriever
from pursuit.retrievers.dense import DenseRetriever
from pursuit.retrievers.encoders import KeywordEncoder, SentenceTransformerEncoder
from pursuit.retrievers.pipeline_parser import stage_names
from pursuit.retrievers.stage import Stage

#: The stages of :func:`index_stages` that read the index's dense vectors; the others never
#: touch them, so an index opened for those alone can skip (or lack) its vectors.
VECTOR_STAGES = frozenset({"dense", "events"})


def needs_vectors(*pipelines: str) -> bool:
    """Whether any of these pipeline texts names a stage that reads dense vectors.

    Decided from each pipeline's syntax tree (:func:`stage_names`), before any index is
    opened, so a BM25-only run neither builds nor loads vectors.

    Raises:
        PipelineError: a pipeline text that cannot be read.

    Example:
        >>> needs_vectors("bm25%100 >> icr%10"), needs_vectors("0.5*bm25 + 0.5*dense")
        (False, True)
    """
    return any(stage_names(text) & VECTOR_STAGES for text in pipelines)


def _vectors(index: SearchIndex, stage: str) -> FaissIndex:
    """The index's loaded vectors, or an error saying how to get them."""
    if index.vectors is not None:
        return index.vectors
    if index.has_vectors:
        raise IndexError_(f"{index.path} was opened without loading its vectors "
                          f"(vectors=False), so '{stage}' cannot run; open it with vectors=True")
    raise IndexError_(f"{index.path} has no dense vectors, so '{stage}' cannot run; "
                      f"{add_vectors_hint(index.path)} (or use a pipeline without "
                      f"{' or '.join(sorted(VECTOR_STAGES))})")


def encoder_for(index: SearchIndex, *, dtype: str = "auto") -> Encoder:
    """Load the encoder an index's vectors were built with, as its manifest records it.

    ``dtype`` is what the model computes in now (``"auto"``: bfloat16 where the hardware
    computes it natively, else float32); the manifest's record of the build's dtype is
    provenance, and vectors of either dtype compare with each other.
    """
    config = index.encoder_config
    if config is None:
        raise IndexError_(f"{index.path} has no dense vectors; {add_vectors_hint(index.path)}")
    if config.get("kind") == "keyword":
        return KeywordEncoder(config["vocabulary"])
    if config.get("kind") == "causal-lm":
        from pursuit.retrievers.llmql.encoder import LLMEncoder  # torch only when needed

        return LLMEncoder.from_config(config, dtype=dtype)
    return SentenceTransformerEncoder(config["model_id"], dtype=dtype)


def index_stages(index: SearchIndex, *, encoder: Encoder | None = None,
                 filter: DocFilter | None = None, fetch_docs: bool = False,
                 dtype: str = "auto") -> dict[str, Callable[..., Stage]]:
    """Stage constructors over ``index``: ``bm25``, ``dense``, and ``events`` when it has an
    event store (``pursuit events build``).

    The encoder is loaded (in ``dtype``) on first use of ``dense`` or ``events`` and shared
    by every such stage; the event store is opened (and checked) on first use of ``events``.

    Example:
        >>> stages = index_stages(SearchIndex.open("demo-index"))  # doctest: +SKIP
        >>> pipeline = parse_pipeline("bm25%100 | dense%100", stages)  # doctest: +SKIP
    """
    name = str(index.path)
    loaded: list[Encoder] = [encoder] if encoder is not None else []

    def bm25(**kwargs: Any) -> Stage:
        # The options named in the text are named in the stage's textual form and provenance.
        return BM25Retriever(index.bm25, index.store, filter=filter, index_name=name,
                             fetch_docs=fetch_docs, options=kwargs, **kwargs)

    def dense(**kwargs: Any) -> Stage:
        vectors = _vectors(index, "dense")
        if not loaded:
            loaded.append(encoder_for(index, dtype=dtype))
        return DenseRetriever(vectors, loaded[0], index.store, filter=filter,
                              index_name=name, fetch_docs=fetch_docs, options=kwargs, **kwargs)

    stages: dict[str, Callable[..., Stage]] = {"bm25": bm25, "dense": dense}
    if (index.path / EVENTS_DIR).is_dir():
        opened: list[EventStore] = []

        def events(**kwargs: Any) -> Stage:
            from pursuit.retrievers.events.retriever import EventAwareRetriever

            vectors = _vectors(index, "events")
            if not opened:
                opened.append(open_event_store(index))
            if not loaded:
                loaded.append(encoder_for(index, dtype=dtype))
            return EventAwareRetriever(vectors, loaded[0], index.store, opened[0],
                                       filter=filter, index_name=name, fetch_docs=fetch_docs,
                                       options=kwargs, **kwargs)

        stages["events"] = events
    return stages
