"""Events in memory: timestamped document vectors grouped by online single-pass clustering.

Documents arrive one at a time, in order, and are clustered in a single pass: a document
joins the most similar event that it fits in time, when the cosine between its vector and
the event's centroid reaches ``threshold``, and otherwise starts a new event. It fits in
time when the event's span, stretched to include the document, lasts at most
``window_days``; so an event never covers more than the window, and a long-running story
becomes a chain of events. Ties go to the older event.

Each event keeps the sum of its members' unit vectors (float64; the centroid is the sum,
normalised), its time span, its members in arrival order, and a *representative* whose
title is the event's title: after each join the representative stays unless the newcomer
is strictly closer to the new centroid. Adding documents in two calls gives exactly the
events of one call over the same sequence, also across a save and a load
(:mod:`pursuit.indexes.events.files`), because :meth:`EventStore.state` holds everything
that decides each step.

Example:
    >>> store = EventStore(dim=384, window_days=3, threshold=0.6)  # doctest: +SKIP
    >>> store.add(ids, vectors, times, titles)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from pursuit.indexes.docstore import from_us, to_us

_DAY_US = 86_400_000_000


@dataclass(frozen=True)
class Event:
    """One event: documents about the same happening within a short time.

    Attributes:
        id: Position in the store (0, 1, ... in order of creation).
        title: The representative member's title.
        start / end: Publication times of the earliest and latest member (UTC).
        members: Member document ids in arrival order.
        representative: The id of the member whose title is the event's title.
    """

    id: int
    title: str
    start: datetime
    end: datetime
    members: tuple[str, ...]
    representative: str


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 0 else v).astype(np.float32)


class EventStore:
    """Events over timestamped document vectors, built by online single-pass clustering.

    Args:
        dim: Vector dimension.
        window_days: Longest time span of one event.
        threshold: Lowest cosine between a document and an event centroid for it to join.

    Example:
        >>> s = EventStore(dim=2, window_days=2, threshold=0.8)
        >>> t = [datetime(2022, 6, d, tzinfo=UTC) for d in (1, 2, 9)]
        >>> s.add(["a", "b", "c"], np.array([[1, 0], [1, 0.1], [1, 0]]), t, ["A", "B", "C"])
        [0, 0, 1]
    """

    def __init__(self, dim: int, *, window_days: float = 3.0, threshold: float = 0.6) -> None:
        if window_days <= 0:
            raise ValueError(f"window_days must be positive, got {window_days}")
        self.dim, self.window_days, self.threshold = int(dim), float(window_days), float(threshold)
        self._window_us = round(self.window_days * _DAY_US)
        self._sums = np.zeros((0, self.dim), dtype=np.float64)
        self._centroids = np.zeros((0, self.dim), dtype=np.float32)
        self._reps = np.zeros((0, self.dim), dtype=np.float32)
        self._start = np.zeros(0, dtype=np.int64)
        self._end = np.zeros(0, dtype=np.int64)
        self._members: list[list[str]] = []
        self._titles: list[str] = []
        self._rep_ids: list[str] = []
        self.event_of: dict[str, int] = {}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def centroids(self) -> np.ndarray:
        """Unit centroids, ``(n_events, dim)`` float32."""
        return self._centroids[: self._n]

    @property
    def starts_us(self) -> np.ndarray:
        """Start of each event in microseconds since the epoch (int64)."""
        return self._start[: self._n]

    @property
    def ends_us(self) -> np.ndarray:
        """End of each event in microseconds since the epoch (int64)."""
        return self._end[: self._n]

    def event(self, i: int) -> Event:
        """Event ``i`` as plain data."""
        if not 0 <= i < self._n:
            raise IndexError(f"no event {i}; the store holds {self._n}")
        return Event(i, self._titles[i], from_us(int(self._start[i])), from_us(int(self._end[i])),
                     tuple(self._members[i]), self._rep_ids[i])

    def events(self) -> list[Event]:
        """Every event, in order of creation."""
        return [self.event(i) for i in range(self._n)]

    # Clustering --------------------------------------------------------------------
    def add(self, ids: Sequence[str], vectors: np.ndarray, times: Sequence[datetime],
            titles: Sequence[str]) -> list[int]:
        """Cluster documents in the given order; returns the event of each.

        Args:
            ids: Document ids, none already in the store.
            vectors: ``(len(ids), dim)``; normalised here, so any scale works.
            times: Publication times (timezone-aware).
            titles: Titles (an event takes its representative's).

        Raises:
            ValueError: lengths or dimension disagree, or an id is already in the store.
        """
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        if vectors.shape[1] != self.dim or not len(ids) == len(times) == len(titles):
            raise ValueError(f"add got {len(ids)} ids, {vectors.shape} vectors, {len(times)} "
                             f"times and {len(titles)} titles; expected one {self.dim}-d vector, "
                             f"time and title per id")
        out = []
        for doc_id, v, t, title in zip(ids, vectors, times, titles, strict=True):
            if doc_id in self.event_of:
                raise ValueError(f"document {doc_id!r} is already in event {self.event_of[doc_id]}")
            out.append(self._add_one(doc_id, _unit(v), to_us(t), title))
        return out

    def _add_one(self, doc_id: str, v: np.ndarray, t: int, title: str) -> int:
        n = self._n
        span = np.maximum(self._end[:n], t) - np.minimum(self._start[:n], t)
        fits = np.flatnonzero(span <= self._window_us)
        best = -1
        if fits.size:
            sims = self._centroids[fits] @ v
            j = int(np.argmax(sims))  # the first maximum: the older event wins a tie
            if sims[j] >= self.threshold:
                best = int(fits[j])
        if best < 0:
            best = self._new_event(v, t, doc_id, title)
        else:
            self._sums[best] += v
            self._centroids[best] = _unit(self._sums[best])
            c = self._centroids[best]
            if float(v @ c) > float(self._reps[best] @ c):
                self._reps[best], self._rep_ids[best], self._titles[best] = v, doc_id, title
            self._start[best] = min(int(self._start[best]), t)
            self._end[best] = max(int(self._end[best]), t)
            self._members[best].append(doc_id)
        self.event_of[doc_id] = best
        return best

    def _new_event(self, v: np.ndarray, t: int, doc_id: str, title: str) -> int:
        if self._n == len(self._start):  # grow the arrays geometrically
            cap = max(16, 2 * self._n)
            self._sums = _grown(self._sums, cap)
            self._centroids, self._reps = _grown(self._centroids, cap), _grown(self._reps, cap)
            self._start, self._end = _grown(self._start, cap), _grown(self._end, cap)
        i = self._n
        self._sums[i] = v
        self._centroids[i] = _unit(self._sums[i])
        self._reps[i], self._start[i], self._end[i] = v, t, t
        self._members.append([doc_id])
        self._titles.append(title)
        self._rep_ids.append(doc_id)
        self._n += 1
        return i

    # Lookup --------------------------------------------------------------------------
    def near(self, query: np.ndarray, *, as_of: datetime | None, horizon_days: float = 7.0,
             k: int = 3, min_similarity: float = 0.0, around: Sequence[date] = (),
             around_days: float = 2.0) -> list[tuple[int, float]]:
        """The events closest to ``query`` that ended before ``as_of`` and near it in time.

        An event qualifies when its last member was published before ``as_of`` (so no
        member postdates it); when it ended at most ``horizon_days`` before ``as_of``, or
        its span comes within ``around_days`` of one of the days in ``around`` (dates the
        query names); and when its centroid's cosine with ``query`` is at least
        ``min_similarity``. Without ``as_of``, the latest member time in the store plays
        "now" (and every event ended by then).

        Returns:
            Up to ``k`` ``(event id, cosine)`` pairs, most similar first (ties: older event).
        """
        if self._n == 0:
            return []
        ends = self.ends_us
        now = to_us(as_of) if as_of is not None else int(ends.max()) + 1
        close = ends >= now - round(horizon_days * _DAY_US)
        pad = round(around_days * _DAY_US)
        for day in around:
            start = to_us(datetime(day.year, day.month, day.day, tzinfo=UTC))
            close |= (self.starts_us < start + _DAY_US + pad) & (ends >= start - pad)
        ok = (ends < now) & close
        cand = np.flatnonzero(ok)
        if cand.size == 0:
            return []
        sims = self.centroids[cand] @ _unit(np.asarray(query, dtype=np.float32).reshape(-1))
        keep = sims >= min_similarity
        cand, sims = cand[keep], sims[keep]
        order = np.lexsort((cand, -sims))[:k]
        return [(int(cand[i]), float(sims[i])) for i in order]

    # Persistence -----------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        """Arrays and per-event records that :func:`restore` turns back into this store."""
        n = self._n
        arrays: dict[str, np.ndarray] = {"centroids": self._centroids[:n].copy(), "sums": self._sums[:n].copy(),
                  "reps": self._reps[:n].copy()}
        records: list[dict[str, Any]] = [{"id": i, "title": self._titles[i], "start_us": int(self._start[i]),
                    "end_us": int(self._end[i]), "start": from_us(int(self._start[i])).isoformat(),
                    "end": from_us(int(self._end[i])).isoformat(),
                    "representative": self._rep_ids[i], "members": list(self._members[i])}
                   for i in range(n)]
        return arrays, records

    @classmethod
    def restore(cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                records: Sequence[Mapping[str, Any]]) -> EventStore:
        """The store whose :meth:`state` gave ``arrays`` and ``records``."""
        store = cls(int(params["dim"]), window_days=float(params["window_days"]),
                    threshold=float(params["threshold"]))
        n = len(records)
        store._sums = np.array(arrays["sums"], dtype=np.float64)
        store._centroids = np.array(arrays["centroids"], dtype=np.float32)
        store._reps = np.array(arrays["reps"], dtype=np.float32)
        store._start = np.array([int(r["start_us"]) for r in records], dtype=np.int64)
        store._end = np.array([int(r["end_us"]) for r in records], dtype=np.int64)
        store._members = [list(r["members"]) for r in records]
        store._titles = [str(r["title"]) for r in records]
        store._rep_ids = [str(r["representative"]) for r in records]
        store.event_of = {m: i for i, ms in enumerate(store._members) for m in ms}
        store._n = n
        return store


def _grown(a: np.ndarray, cap: int) -> np.ndarray:
    out = np.zeros((cap, *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out
