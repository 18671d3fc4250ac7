"""Event-aware dense retrieval: time-sensitive queries expanded with their current events.

For each query the stage

1. takes its "as of" time: ``query.metadata["as_of"]`` (ISO text or datetime), else the
   ``published_before`` bound of the query's or the stage's filter, else none (live);
2. ANDs ``DocFilter(published_before=as_of)`` into the query's filter, so the index
   search itself never sees a document published at or after that time;
3. decides whether the query is time-sensitive (:mod:`pursuit.retrievers.events.timesense`, or
   every query with ``always=True``); only those are expanded and recency-scored;
4. picks up to ``n_events`` events of the store that ended before ``as_of``, at most
   ``horizon_days`` earlier or within ``around_days`` of a date the query names ("the
   report on October 7, 2023"), with centroid cosine >= ``min_similarity``, and fuses them
   into the query vector (:func:`fuse_default`, or a trained
   :class:`~pursuit.retrievers.events.query_fusion.EventFusion`);
5. searches ``max(k, pool)`` deep with the fused vector, adds
   ``beta * 0.5 ** (age_days / half_life_days)`` to each document's score (age at the as-of
   time; when live, at the newest event's time, as the event lookup does; undated documents
   get no bonus, and a query that names its own dates gets none, as it does not ask for the
   latest news), and keeps the top ``k``.

Example:
    >>> stage = EventAwareRetriever(index.vectors, encoder, index.store,
    ...                             open_event_store(index))  # doctest: +SKIP
    >>> stage.search(Query("q", "earthquake today", {"as_of": "2022-06-17"}))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from pursuit.indexes.docstore import DocStore, to_us
from pursuit.indexes.events.store import Event, EventStore
from pursuit.indexes.filters import DocFilter, as_utc
from pursuit.indexes.protocols import Encoder
from pursuit.indexes.records import Query, Ranking
from pursuit.indexes.vectors.store import VectorStore
from pursuit.retrievers.dense import DenseRetriever
from pursuit.retrievers.events.timesense import DEFAULT_THRESHOLD, detect, mentioned_dates
from pursuit.retrievers.rows import query_filter

if TYPE_CHECKING:
    from pursuit.retrievers.events.query_fusion import EventFusion

_DAY_US = 86_400_000_000

#: Defaults of the parameter-free fusion: attention temperature and gate.
DEFAULT_TAU, DEFAULT_LAMBDA = 0.1, 0.3


def fuse_default(query: np.ndarray, events: np.ndarray, *, tau: float = DEFAULT_TAU,
                 lam: float = DEFAULT_LAMBDA) -> np.ndarray:
    """``normalise((1 - lam) q + lam * sum_i softmax(q.e/tau)_i e_i)``; ``q`` when no events.

    Args:
        query: ``(dim,)`` unit query vector.
        events: ``(m, dim)`` unit event centroids (``m`` may be 0).
        tau: Softmax temperature over the cosines.
        lam: Weight of the event context.
    """
    q = np.asarray(query, dtype=np.float64)
    if len(events) == 0:
        return np.asarray(query, dtype=np.float32)
    e = np.asarray(events, dtype=np.float64)
    logits = e @ q / tau
    a = np.exp(logits - logits.max())
    mixed = (1 - lam) * q + lam * (a / a.sum()) @ e
    norm = np.linalg.norm(mixed)
    return (mixed / norm if norm > 0 else mixed).astype(np.float32)


def as_of_of(query: Query, default: DocFilter | None = None) -> datetime | None:
    """The query's "as of" time: ``metadata["as_of"]``, else a filter's ``published_before``."""
    value = query.metadata.get("as_of")
    if value is not None:
        return as_utc(value)
    for flt in (query_filter(query), default):
        if flt is not None and flt.published_before is not None:
            return flt.published_before
    return None


def with_as_of(query: Query, as_of: datetime | None) -> Query:
    """``query`` whose filter also requires ``published_at < as_of`` (unchanged if None)."""
    if as_of is None:
        return query
    flt = query_filter(query) or DocFilter()
    before = as_of if flt.published_before is None else min(as_of, flt.published_before)
    if before == flt.published_before:
        return query
    return replace(query, metadata={**query.metadata,
                                    "filter": replace(flt, published_before=before)})


@dataclass(frozen=True)
class Expansion:
    """How the stage read one query.

    Attributes:
        as_of: The query's "as of" time (``None``: live).
        sensitive: Whether it was treated as time-sensitive.
        events: The events fused in, with their cosine to the query.
        vector: The (fused) query vector searched with.
        named: Dates the query names (these anchor the event lookup and turn recency off).
    """

    as_of: datetime | None
    sensitive: bool
    events: tuple[tuple[Event, float], ...]
    vector: np.ndarray
    named: tuple[date, ...] = ()


class EventAwareRetriever(DenseRetriever):
    """Dense retrieval with event expansion, recency scoring and an "as of" filter.

    Args:
        vectors, encoder, store: As for :class:`DenseRetriever`.
        events: The index's event store.
        k, filter, index_name, fetch_docs, options: As for :class:`DenseRetriever`.
        n_events: Most events fused into one query.
        horizon_days: How long before the as-of time an event may have ended.
        min_similarity: Lowest query-centroid cosine of a fused event.
        tau, lam: Temperature and gate of the parameter-free fusion.
        beta: Weight of the recency bonus (0 turns it off).
        half_life_days: Age at which the recency bonus halves.
        pool: Search depth before recency re-scoring (at least ``k``).
        always: Treat every query as time-sensitive.
        threshold: The detector's threshold (see :func:`~pursuit.retrievers.events.timesense.detect`).
        fusion: A trained fusion module to use instead of the parameter-free default.
        around_days: Events within this many days of a date the query names
            (:func:`~pursuit.retrievers.events.timesense.mentioned_dates`) qualify too, however
            long before the as-of time; negative turns date anchoring off.
    """

    label = "events"

    def __init__(self, vectors: VectorStore, encoder: Encoder, store: DocStore,
                 events: EventStore, *, k: int | None = None, filter: DocFilter | None = None,
                 index_name: str | None = None, fetch_docs: bool = False, n_events: int = 3,
                 horizon_days: float = 7.0, min_similarity: float = 0.3,
                 tau: float = DEFAULT_TAU, lam: float = DEFAULT_LAMBDA, beta: float = 0.1,
                 half_life_days: float = 7.0, pool: int = 100, always: bool = False,
                 threshold: float = DEFAULT_THRESHOLD, fusion: EventFusion | None = None,
                 around_days: float = 2.0, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(vectors, encoder, store, k=k, filter=filter, index_name=index_name,
                         fetch_docs=fetch_docs, options=options)
        if events.dim != vectors.dim:
            raise ValueError(f"the event store holds {events.dim}-d centroids but the vectors "
                             f"are {vectors.dim}-d; rebuild it: pursuit events build --index "
                             f"{index_name or 'DIR'}")
        self.events, self.fusion = events, fusion
        self.n_events, self.horizon_days, self.min_similarity = n_events, horizon_days, min_similarity
        self.tau, self.lam, self.beta, self.half_life_days = tau, lam, beta, half_life_days
        self.pool, self.always, self.threshold = pool, always, threshold
        self.around_days = around_days
        self._published: dict[int, int | None] = {}

    # Reading a query ------------------------------------------------------------------
    def expand_batch(self, queries: Sequence[Query]) -> list[Expansion]:
        """How each query is read: its as-of time, sensitivity, events and search vector."""
        encoded = self.encoder.encode_query([q.text for q in queries])
        out = []
        for q, vec in zip(queries, encoded, strict=True):
            as_of = as_of_of(q, self.filter)
            sensitive = self.always or detect(q.text, threshold=self.threshold).sensitive
            named = tuple(mentioned_dates(q.text)) if self.around_days >= 0 else ()
            picked: tuple[tuple[Event, float], ...] = ()
            if sensitive and self.n_events > 0:
                near = self.events.near(
                    vec, as_of=as_of, horizon_days=self.horizon_days, k=self.n_events,
                    min_similarity=self.min_similarity, around_days=self.around_days,
                    around=named)
                picked = tuple((self.events.event(i), s) for i, s in near)
            if picked:
                cents = self.events.centroids[[e.id for e, _ in picked]]
                if self.fusion is not None:
                    from pursuit.retrievers.events.query_fusion import (
                        fuse_with,  # torch only when trained
                    )

                    vec = fuse_with(self.fusion, vec, cents)
                else:
                    vec = fuse_default(vec, cents, tau=self.tau, lam=self.lam)
            out.append(Expansion(as_of, sensitive, picked, np.asarray(vec, dtype=np.float32),
                                 named))
        return out

    def expand(self, query: Query | str) -> Expansion:
        """:meth:`expand_batch` for one query."""
        return self.expand_batch([Query.coerce(query)])[0]

    # Searching ------------------------------------------------------------------------
    def retrieve_batch(self, queries: Sequence[Query], k: int) -> list[Ranking]:
        """The top ``k`` per query; the as-of bound joins each query's filter first."""
        bounded = [with_as_of(q, as_of_of(q, self.filter)) for q in queries]
        rankings = super().retrieve_batch(bounded, k)
        return [replace(r, query=q) for r, q in zip(rankings, queries, strict=True)]

    def _prepare(self, queries: Sequence[Query]) -> Any:
        expansions = self.expand_batch(queries)
        return (np.stack([x.vector for x in expansions]), expansions)

    def _search_rows(self, prepared: Any, members: list[int], k: int,
                     mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        vectors, expansions = prepared
        rows, scores = self.vectors.search(vectors[members], max(k, self.pool), mask)
        scores = scores.astype(np.float64)
        for i, m in enumerate(members):
            scores[i] += self._bonus(rows[i], expansions[m])
        scores[rows < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(rows, order, 1), np.take_along_axis(scores, order, 1)

    def _bonus(self, rows: np.ndarray, x: Expansion) -> np.ndarray:
        if self.beta == 0 or not x.sensitive or x.named:
            return np.zeros(len(rows))
        missing = [int(r) for r in rows if r >= 0 and int(r) not in self._published]
        if missing:
            for r, doc in zip(missing, self.store.get_rows(missing), strict=True):
                self._published[r] = to_us(doc.published_at) if doc.published_at else None
        now = to_us(x.as_of) if x.as_of is not None else self._live_now()
        out = np.zeros(len(rows))
        for i, r in enumerate(rows.tolist()):
            t = self._published.get(r) if r >= 0 else None
            if t is not None:
                out[i] = self.beta * 0.5 ** (max(now - t, 0) / _DAY_US / self.half_life_days)
        return out

    def _live_now(self) -> int:
        # Live search: the newest event time of the index plays "now", so an index of
        # last year's news is scored as of its own last day, not as stale as of today.
        ends = self.events.ends_us
        return int(ends.max()) + 1 if len(ends) else to_us(datetime.now(UTC))

    def score(self, query: Query, doc_ids: Sequence[str]) -> np.ndarray:
        """Scores of these documents: fused-vector similarity plus the recency bonus.

        Filters do not apply: the caller chose the documents.
        """
        if not doc_ids:
            return np.zeros(0)
        x = self.expand(query)
        rows = self.store.rows_of(doc_ids)
        stored = self.vectors.vectors_of(rows).astype(np.float64)
        q = x.vector.astype(np.float64)
        base = -((stored - q) ** 2).sum(axis=1) if self.vectors.metric == "l2" else stored @ q
        return base + self._bonus(np.asarray(rows, dtype=np.int64), x)
