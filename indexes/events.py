"""The event store: timestamped documents grouped into news events, kept beside an index.

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
events of one call over the same sequence, also across a save and a load, because the
state that decides each step is saved whole.

Documents without a publication date have no place in time and are left out.

Layout of ``INDEX/events/`` (written to a sibling folder, renamed into place when done)::

    events.json      format, encoder, parameters, the index state it was built from,
                     sha256 of each array file, and the events (title, span, members)
    centroids.npy    (n_events, dim) float32 unit centroids, what searches read
    sums.npy         (n_events, dim) float64 member-vector sums, what updates extend
    reps.npy         (n_events, dim) float32 each representative's vector

Example:
    >>> store = EventStore(dim=384, window_days=3, threshold=0.6)  # doctest: +SKIP
    >>> store.add(ids, vectors, times, titles)  # doctest: +SKIP
    >>> save_event_store(store, index.path / "events", encoder={...}, index_state={...})  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.docstore import from_us, to_us
from pursuit.indexes.errors import IndexError_
from pursuit.indexes.protocols import Encoder

EVENTS_DIR = "events"
FORMAT_NAME = "pursuit-events"
FORMAT_VERSION = 1
_DAY_US = 86_400_000_000


def rebuild_events_hint(index_path: object) -> str:
    """The command that (re)builds the event store of the index at ``index_path``."""
    return f"pursuit events build --index {index_path}"


class EventStoreError(IndexError_):
    """An event store that is missing, damaged, or does not match its index."""


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


# Files -------------------------------------------------------------------------------
_ARRAYS = ("centroids", "sums", "reps")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_event_store(store: EventStore, directory: str | Path, *, encoder: Mapping[str, Any],
                     index_state: Mapping[str, Any]) -> None:
    """Write ``store`` to ``directory`` atomically (a sibling folder renamed into place).

    Args:
        store: The events.
        directory: Usually ``INDEX/events``.
        encoder: The index's encoder record (``model_id`` and ``dim`` are kept and checked).
        index_state: What the store was built from (``corpus_sha256``, ``n_docs``); opening
            compares it with the index.
    """
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    arrays, records = store.state()
    files = {}
    for name in _ARRAYS:
        np.save(tmp / f"{name}.npy", arrays[name])
        files[f"{name}.npy"] = _sha256(tmp / f"{name}.npy")
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "encoder": {"model_id": encoder["model_id"], "dim": int(encoder["dim"])},
            "params": {"dim": store.dim, "window_days": store.window_days,
                       "threshold": store.threshold},
            "index": dict(index_state), "n_events": len(store), "n_members": len(store.event_of),
            "files": files, "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "events": records}
    (tmp / "events.json").write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    if directory.exists():
        os.rename(directory, old)
    os.rename(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def load_event_store(directory: str | Path, *, index_path: object = "INDEX",
                     encoder: Mapping[str, Any] | None = None,
                     index_state: Mapping[str, Any] | None = None) -> EventStore:
    """Read an event store, checking its files, and its encoder and index when given.

    Raises:
        EventStoreError: missing, damaged (unreadable JSON, a changed or missing array
            file, wrong shapes), built with another encoder, or built from another state
            of the index; every message names :func:`rebuild_events_hint`'s command.
    """
    directory = Path(directory)
    fix = f"rebuild it with: {rebuild_events_hint(index_path)}"
    meta_path = directory / "events.json"
    if not meta_path.is_file():
        raise EventStoreError(f"{index_path} has no event store ({meta_path} is missing); "
                              f"build one with: {rebuild_events_hint(index_path)}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ValueError("not an event store")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {meta.get('format_version')!r}, this pursuit "
                             f"reads {FORMAT_VERSION}")
        records, params, n = meta["events"], meta["params"], int(meta["n_events"])
        arrays = {}
        for name in _ARRAYS:
            path = directory / f"{name}.npy"
            if not path.is_file() or _sha256(path) != meta["files"][f"{name}.npy"]:
                raise ValueError(f"{path.name} is missing or changed since it was written")
            arrays[name] = np.load(path, allow_pickle=False)
            if arrays[name].shape != (n, int(params["dim"])) or len(records) != n:
                raise ValueError(f"{path.name} has shape {arrays[name].shape}, expected "
                                 f"({n}, {params['dim']})")
        store = EventStore.restore(params, arrays, records)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise EventStoreError(f"the event store {directory} is damaged ({exc}); {fix}") from exc
    built = meta["encoder"]
    if encoder is not None and (built["model_id"], built["dim"]) != (encoder["model_id"],
                                                                     encoder["dim"]):
        raise EventStoreError(f"the event store {directory} was built with {built['model_id']} "
                              f"({built['dim']}-d) but the index uses {encoder['model_id']} "
                              f"({encoder['dim']}-d); {fix}")
    if index_state is not None and meta["index"].get("corpus_sha256") != index_state.get(
            "corpus_sha256"):
        raise EventStoreError(
            f"the event store {directory} is out of date: it was built from "
            f"{meta['index'].get('n_docs')} documents and the index now holds "
            f"{index_state.get('n_docs')} (or others); update it with: "
            f"{rebuild_events_hint(index_path)}")
    return store


# Over an index -------------------------------------------------------------------------
def _index_state(index: SearchIndex) -> dict[str, Any]:
    return {"corpus_sha256": index.manifest.corpus_sha256, "n_docs": index.manifest.n_docs}


def _dense_config(index: SearchIndex) -> Mapping[str, Any]:
    config = index.encoder_config
    if index.vectors is None or config is None:
        raise EventStoreError(f"{index.path} has no dense vectors, and events are clusters of "
                              f"them; rebuild the index with an encoder: pursuit index "
                              f"{index.manifest.source} --out {index.path}")
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
    save_event_store(store, index.path / EVENTS_DIR, encoder=config,
                     index_state=_index_state(index))
    return store
