"""The document store: every document of an index, on SQLite, addressed by row.

Each document gets an integer *row* when it is added: 0, 1, 2, ... in insertion order,
never reused. Deleting a document leaves a tombstone (its row and id stay, its contents
are cleared), so the rows that the BM25 and vector indexes hold stay valid. Filters become
boolean masks over rows (length :attr:`DocStore.n_rows`).

Example:
    >>> with DocStore.create(tmp / "docs.sqlite") as store:     # doctest: +SKIP
    ...     store.add([Doc("d1", "Tides follow the moon.")])
    ...     store.get(["d1"])["d1"].text
    'Tides follow the moon.'
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from pursuit.indexes.errors import IndexError_, PursuitError
from pursuit.indexes.filters import DocFilter, as_utc
from pursuit.indexes.records import Doc

FORMAT_NAME = "pursuit-docstore"
FORMAT_VERSION = 1
# SQLite allows 32766 host parameters per statement; 500 keeps statements small and fast.
CHUNK = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_COLS = "row, id, title, text, url, published_us, metadata"
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE docs (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    url TEXT,
    published_us INTEGER,
    metadata TEXT NOT NULL,
    added_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE UNIQUE INDEX docs_live_id ON docs (id) WHERE deleted_at IS NULL;
CREATE INDEX docs_published ON docs (published_us) WHERE deleted_at IS NULL;
"""


class UnknownDocError(PursuitError, LookupError):
    """A document id or row that the store does not hold (or holds only as a tombstone)."""


class DuplicateDocError(PursuitError, ValueError):
    """An added document whose id the store already holds, or that a batch repeats."""


def _rebuild(path: Path, why: str) -> IndexError_:
    # An index directory holds its store as DIR/docs.sqlite.
    return IndexError_(f"{path}: {why}; rebuild the index with: "
                       f"pursuit index SOURCE --out {path.parent}")


def to_us(dt: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (naive datetimes are taken as UTC)."""
    return (as_utc(dt) - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """The UTC datetime ``us`` microseconds after the Unix epoch."""
    return _EPOCH + timedelta(microseconds=us)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _doc(r: Sequence[Any]) -> Doc:
    return Doc(id=r[1], title=r[2], text=r[3], url=r[4],
               published_at=None if r[5] is None else from_us(r[5]), metadata=json.loads(r[6]))


class DocStore:
    """Documents on SQLite, addressed by id and by row.

    A store is safe to share between threads (one connection behind a lock). Open it with
    :meth:`create` or :meth:`open`, and close it (or use it as a context manager).
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
        self._conn, self.path, self.readonly = conn, path, readonly
        self._lock = threading.RLock()
        self._live_mask: np.ndarray | None = None

    @classmethod
    def create(cls, path: str | Path) -> DocStore:
        """Create an empty store at ``path`` (the file must not exist yet).

        Example:
            >>> store = DocStore.create("index/docs.sqlite")   # doctest: +SKIP
        """
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} already exists; open it with DocStore.open or remove it")
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False)
        with conn:
            conn.executescript(_SCHEMA)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("format", FORMAT_NAME), ("format_version", str(FORMAT_VERSION)),
                ("created_at", _now())])
        return cls(conn, path, readonly=False)

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False) -> DocStore:
        """Open an existing store.

        Raises:
            IndexError_: ``path`` is missing, not a document store, damaged, or of another
                format version; the message names the file and the rebuild command.
        """
        path = Path(path)
        if not path.is_file():
            raise _rebuild(path, "document store not found")
        try:
            uri = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rw'}"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            conn.execute("SELECT row FROM docs LIMIT 1").fetchall()
        except sqlite3.DatabaseError as e:
            raise _rebuild(path, f"not a readable document store ({e})") from e
        if meta.get("format") != FORMAT_NAME:
            conn.close()
            raise _rebuild(path, "not a pursuit document store")
        if meta.get("format_version") != str(FORMAT_VERSION):
            conn.close()
            raise _rebuild(path, f"document store format {meta.get('format_version')} is not "
                                 f"the supported format {FORMAT_VERSION}")
        return cls(conn, path, readonly=readonly)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> DocStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # Writing ------------------------------------------------------------------
    def add(self, docs: Iterable[Doc]) -> np.ndarray:
        """Add documents; return their new rows (int64) in input order.

        All or nothing: one transaction, so an error leaves the store as it was.

        Raises:
            DuplicateDocError: An id the store already holds, or one the batch repeats.
            ValueError: Metadata that is not JSON-serialisable (names the document).
        """
        with self._lock:
            start = self.n_rows
            ids: list[str] = []
            seen: set[str] = set()
            added = _now()

            def records() -> Iterator[tuple[Any, ...]]:
                for d in docs:
                    if d.id in seen:
                        raise DuplicateDocError(f"document id {d.id!r} appears twice in the "
                                                "added batch; ids must be unique")
                    seen.add(d.id)
                    try:
                        meta = json.dumps(dict(d.metadata), ensure_ascii=False)
                    except (TypeError, ValueError) as e:
                        raise ValueError(f"document {d.id!r}: metadata is not JSON-serialisable "
                                         f"({e}); keep metadata values to str/int/float/bool/"
                                         "None/list/dict") from e
                    pub = None if d.published_at is None else to_us(d.published_at)
                    ids.append(d.id)
                    yield (start + len(ids) - 1, d.id, d.title, d.text, d.url, pub, meta, added)

            try:
                with self._conn:
                    self._conn.executemany(
                        "INSERT INTO docs (row, id, title, text, url, published_us, metadata,"
                        " added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", records())
            except sqlite3.IntegrityError as e:
                raise DuplicateDocError(
                    f"document id {ids[-1]!r} is already in {self.path}; delete it first "
                    "or give the new document another id; nothing was added") from e
            self._live_mask = None
            return np.arange(start, start + len(ids), dtype=np.int64)

    def delete(self, ids: Iterable[str]) -> np.ndarray:
        """Delete documents, leaving tombstones; return their rows (int64) in input order.

        Raises:
            UnknownDocError: An id the store does not hold; nothing is deleted.
        """
        with self._lock:
            rows = self.rows_of(list(ids))
            with self._conn:
                self._conn.executemany(
                    "UPDATE docs SET title = '', text = '', url = NULL, published_us = NULL,"
                    " metadata = '{}', deleted_at = ? WHERE row = ?",
                    [(_now(), int(r)) for r in rows])
            self._live_mask = None
            return rows

    # Reading ------------------------------------------------------------------
    def _chunked(self, sql: str, keys: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(keys), CHUNK):
            part = list(keys[i:i + CHUNK])
            out += self._query(sql.format(",".join("?" * len(part))), part)
        return out

    def get(self, ids: Sequence[str], *, missing: str = "error") -> dict[str, Doc]:
        """The live documents with these ids, keyed by id in the order asked.

        Args:
            ids: Document ids.
            missing: ``"error"`` raises on an id the store does not hold; ``"skip"`` leaves
                it out of the result.
        """
        found = {r[1]: _doc(r) for r in self._chunked(
            f"SELECT {_COLS} FROM docs WHERE deleted_at IS NULL AND id IN ({{}})", ids)}
        if missing == "error" and len(found) < len(set(ids)):
            self._raise_unknown([i for i in ids if i not in found])
        return {i: found[i] for i in ids if i in found}

    def get_rows(self, rows: Sequence[int] | np.ndarray) -> list[Doc]:
        """The live documents at these rows, in the order asked."""
        keys = [int(r) for r in rows]
        found = {r[0]: _doc(r) for r in self._chunked(
            f"SELECT {_COLS} FROM docs WHERE deleted_at IS NULL AND row IN ({{}})", keys)}
        bad = [r for r in keys if r not in found]
        if bad:
            raise UnknownDocError(f"rows {bad[:10]} are not live documents of {self.path} "
                                  f"(it has rows 0..{self.n_rows - 1}; deleted rows are tombstones)")
        return [found[r] for r in keys]

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Rows (int64) of these live document ids, in the order asked."""
        found = dict((i, r) for r, i in self._chunked(
            "SELECT row, id FROM docs WHERE deleted_at IS NULL AND id IN ({})", ids))
        if len(found) < len(set(ids)):
            self._raise_unknown([i for i in ids if i not in found])
        return np.array([found[i] for i in ids], dtype=np.int64)

    def ids_of(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """Ids at these rows (tombstones keep their ids), in the order asked."""
        keys = [int(r) for r in rows]
        found = dict(self._chunked("SELECT row, id FROM docs WHERE row IN ({})", keys))
        bad = [r for r in keys if r not in found]
        if bad:
            raise UnknownDocError(f"rows {bad[:10]} are not in {self.path} "
                                  f"(it has rows 0..{self.n_rows - 1})")
        return [found[r] for r in keys]

    def added_at(self, ids: Sequence[str]) -> dict[str, datetime]:
        """When each live document was added (UTC)."""
        found = dict(self._chunked(
            "SELECT id, added_at FROM docs WHERE deleted_at IS NULL AND id IN ({})", ids))
        if len(found) < len(set(ids)):
            self._raise_unknown([i for i in ids if i not in found])
        return {i: datetime.fromisoformat(found[i]) for i in ids}

    def _raise_unknown(self, ids: list[str]) -> None:
        shown = ", ".join(repr(i) for i in ids[:5]) + (" ..." if len(ids) > 5 else "")
        raise UnknownDocError(f"no document with id {shown} in {self.path}")

    def all_ids(self) -> list[str]:
        """The id of every row, tombstones included: ``all_ids()[row]``."""
        return [r[0] for r in self._query("SELECT id FROM docs ORDER BY row")]

    @property
    def n_rows(self) -> int:
        """Rows ever assigned, tombstones included: the length of every mask."""
        return int(self._query("SELECT COALESCE(MAX(row) + 1, 0) FROM docs")[0][0])

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM docs WHERE deleted_at IS NULL")[0][0])

    def live_rows(self) -> np.ndarray:
        """Rows (int64, ascending) of the live documents."""
        return np.flatnonzero(self.mask(None)).astype(np.int64)

    def iter_docs(self, batch_size: int = 1000) -> Iterator[tuple[int, Doc]]:
        """Yield ``(row, doc)`` for every live document in row order, ``batch_size`` per query."""
        after = -1
        while True:
            batch = self._query(f"SELECT {_COLS} FROM docs WHERE deleted_at IS NULL AND row > ?"
                                " ORDER BY row LIMIT ?", (after, batch_size))
            for r in batch:
                yield r[0], _doc(r)
            if len(batch) < batch_size:
                return
            after = batch[-1][0]

    def mask(self, flt: DocFilter | None = None) -> np.ndarray:
        """Boolean mask over rows: live and accepted by ``flt`` (exactly ``flt.accepts``)."""
        if flt is None or flt.is_empty:
            with self._lock:
                if self._live_mask is None:
                    self._live_mask = self._select_mask("", ())
                return self._live_mask.copy()
        where, params = "", list[int]()
        if flt.published_before is not None or flt.published_after is not None:
            where += " AND published_us IS NOT NULL"
        if flt.published_before is not None:
            where += " AND published_us < ?"
            params.append(to_us(flt.published_before))
        if flt.published_after is not None:
            where += " AND published_us >= ?"
            params.append(to_us(flt.published_after))
        if not flt.metadata:
            return self._select_mask(where, params)
        # Metadata equality runs DocFilter's own code, so store and filter can never disagree
        # (1 == 1.0 == True in Python, which SQL's json_extract would not reproduce).
        by_meta = DocFilter(metadata=flt.metadata)
        out = np.zeros(self.n_rows, dtype=bool)
        for row, meta in self._query(
                f"SELECT row, metadata FROM docs WHERE deleted_at IS NULL{where}", params):
            out[row] = by_meta.accepts(Doc(id="", text="", metadata=json.loads(meta)))
        return out

    def _select_mask(self, where: str, params: Sequence[Any]) -> np.ndarray:
        out = np.zeros(self.n_rows, dtype=bool)
        rows = self._query(f"SELECT row FROM docs WHERE deleted_at IS NULL{where}", params)
        out[np.array([r[0] for r in rows], dtype=np.int64)] = True
        return out
