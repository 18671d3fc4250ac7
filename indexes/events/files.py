"""The event store on disk: atomic writes, and reads checked against the index they serve.

Layout of ``INDEX/events/`` (written to a sibling folder, renamed into place when done)::

    events.json      format, encoder, parameters, the index state it was built from,
                     sha256 of each array file, and the events (title, span, members)
    centroids.npy    (n_events, dim) float32 unit centroids, what searches read
    sums.npy         (n_events, dim) float64 member-vector sums, what updates extend
    reps.npy         (n_events, dim) float32 each representative's vector

Example:
    >>> save_event_store(store, index.path / "events", encoder={...}, index_state={...})  # doctest: +SKIP
    >>> load_event_store(index.path / "events", index_path=index.path)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pursuit.indexes.errors import IndexError_
from pursuit.indexes.events.store import EventStore

FORMAT_NAME = "pursuit-events"
FORMAT_VERSION = 1


def rebuild_events_hint(index_path: object) -> str:
    """The command that (re)builds the event store of the index at ``index_path``."""
    return f"pursuit events build --index {index_path}"


class EventStoreError(IndexError_):
    """An event store that is missing, damaged, or does not match its index."""


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
