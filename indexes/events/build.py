"""Events over a search index: build, update and open the store in ``INDEX/events``.

The vectors are the index's own document vectors, so building runs no model; the store
is checked against the index's encoder and documents when it is opened. The clustering
itself is :class:`~pursuit.indexes.events.store.EventStore`, the files
:mod:`pursuit.indexes.events.files`; both are re-exported here, so
``pursuit.indexes.events.build`` stays the one import for code that only uses events.

Example:
    >>> index = SearchIndex.open("news-index")  # doctest: +SKIP
    >>> build_event_store(index, window_days=3, threshold=0.6)  # doctest: +SKIP
    >>> open_event_store(index).near(query_vector, as_of=None)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.events.files import (
    FORMAT_NAME,
    FORMAT_VERSION,
    EventStoreError,
    load_event_store,
    rebuild_events_hint,
    save_event_store,
)
from pursuit.indexes.events.store import Event, EventStore
from pursuit.indexes.locking import IndexLock
from pursuit.indexes.manifest import add_vectors_hint
from pursuit.indexes.protocols import Encoder

__all__ = ["EVENTS_DIR", "FORMAT_NAME", "FORMAT_VERSION", "Event", "EventStore",
           "EventStoreError", "build_event_store", "load_event_store", "open_event_store",
           "rebuild_events_hint", "save_event_store"]

#: The event store's folder inside an index.
EVENTS_DIR = "events"


def _index_state(index: SearchIndex) -> dict[str, Any]:
    return {"corpus_sha256": index.manifest.corpus_sha256, "n_docs": index.manifest.n_docs}


def _dense_config(index: SearchIndex) -> Mapping[str, Any]:
    config = index.encoder_config
    if index.vectors is None or config is None:
        if index.has_vectors:
            raise EventStoreError(f"{index.path} was opened without loading its vectors, and "
                                  f"events are clusters of them; open it with vectors=True")
        raise EventStoreError(f"{index.path} has no dense vectors, and events are clusters of "
                              f"them; {add_vectors_hint(index.path)}")
    return config


def open_event_store(index: SearchIndex) -> EventStore:
    """The event store of ``index``, checked against its encoder and current documents.

    Raises:
        EventStoreError: none built, damaged, or out of date (names the command to run).
    """
    return load_event_store(index.path / EVENTS_DIR, index_path=index.path,
                            encoder=_dense_config(index), index_state=_index_state(index))


def build_event_store(index: SearchIndex, *, encoder: Encoder | None = None,
                      window_days: float = 3.0, threshold: float = 0.6,
                      update: bool = True) -> EventStore:
    """Cluster the dated documents of ``index`` into events and save them in ``INDEX/events``.

    Vectors are the index's own document vectors, so no model runs. Documents are taken
    in order of publication time, then id. With ``update`` and a readable store of the
    same parameters whose members are all still in the index, only documents not yet in
    it are added (the result equals a fresh build when they are also the latest);
    otherwise the store is built anew.

    Args:
        index: An index with dense vectors.
        encoder: If given, must be the encoder the index was built with (checked).
        window_days: Longest time span of one event.
        threshold: Lowest document-centroid cosine to join an event.
        update: Extend an existing store rather than rebuild it.

    Example:
        >>> store = build_event_store(SearchIndex.open("news-index"), window_days=3)  # doctest: +SKIP
    """
    config = _dense_config(index)
    if encoder is not None:
        index._check_encoder(encoder, required=True)
    assert index.vectors is not None
    store: EventStore | None = None
    if update:
        try:
            store = load_event_store(index.path / EVENTS_DIR, index_path=index.path, encoder=config)
        except EventStoreError:
            store = None
    dated = [(doc.published_at, doc.id, row, doc.title or doc.text[:80])
             for row, doc in index.store.iter_docs() if doc.published_at is not None]
    live = {doc_id for _, doc_id, _, _ in dated}
    if store is None or (store.window_days, store.threshold) != (window_days, threshold) \
            or not set(store.event_of) <= live:
        store = EventStore(int(config["dim"]), window_days=window_days, threshold=threshold)
    new = sorted((x for x in dated if x[1] not in store.event_of), key=lambda x: (x[0], x[1]))
    for start in range(0, len(new), 4096):
        chunk = new[start:start + 4096]
        vectors = index.vectors.vectors_of(np.array([x[2] for x in chunk], dtype=np.int64))
        store.add([x[1] for x in chunk], vectors, [x[0] for x in chunk], [x[3] for x in chunk])
    with IndexLock(index.path):  # not while another writer copies the index
        save_event_store(store, index.path / EVENTS_DIR, encoder=config,
                         index_state=_index_state(index))
    return store
