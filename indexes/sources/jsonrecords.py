"""Read documents from a JSON list or a JSON Lines file, with a map of which field is what.

A :class:`FieldMap` says which source field holds the id, title, text, url and publication
time; every other field of a record goes into ``Doc.metadata``. :data:`MULTIHOP_RAG_FIELDS`
is the preset for the MultiHop-RAG corpus.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pursuit.indexes.errors import FormatError, PursuitError
from pursuit.indexes.filters import as_utc
from pursuit.indexes.records import Doc


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSON Lines file.

    Args:
        path: The ``.jsonl`` file.

    Raises:
        FormatError: The file is missing or not UTF-8, or a line is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, None, "file not found; expected a JSON Lines file")
    # Binary read with per-line decoding, so a bad byte is reported on its own line.
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise FormatError(path, lineno, "not valid UTF-8; save the file as UTF-8") from e
            if not line.strip():
                continue
            try:
                obj = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                raise FormatError(
                    path, lineno,
                    f"invalid JSON ({e.msg} at column {e.colno}); expected one JSON object per line",
                ) from e
            if not isinstance(obj, dict):
                raise FormatError(
                    path, lineno, f"expected a JSON object per line, found {type(obj).__name__}"
                )
            yield lineno, obj


@dataclass(frozen=True)
class FieldMap:
    """Which field of a source record fills which :class:`Doc` attribute.

    ``text`` must be present in every record, and so must ``id`` when it is mapped; the
    other mapped fields may be missing or ``null``. Fields that are not mapped go into
    ``Doc.metadata`` unchanged.

    When ``id`` is ``None`` the document id is the record's url (when ``url`` is mapped and
    the record has one), else ``sha1:`` plus the first 16 hex digits of the SHA-1 of the
    record as canonical JSON (sorted keys), so ids stay the same when the file is
    reordered or grows.

    Attributes:
        id: Source field of the document id.
        title: Source field of the title.
        text: Source field of the body text.
        url: Source field of the url.
        published_at: Source field of the publication time: an ISO 8601 string (fractions
            beyond microseconds are cut; a missing zone means UTC) or Unix seconds.
    """

    id: str | None = None
    title: str | None = "title"
    text: str = "text"
    url: str | None = "url"
    published_at: str | None = "published_at"

    @classmethod
    def coerce(cls, fields: FieldMap | Mapping[str, str] | None) -> FieldMap | None:
        """A :class:`FieldMap` from a mapping such as ``{"text": "body"}``; ``None`` stays."""
        if fields is None or isinstance(fields, FieldMap):
            return fields
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise PursuitError(f"unknown field map key(s) {', '.join(unknown)}; "
                               f"use {', '.join(sorted(known))}")
        return cls(**dict(fields))

    def mapped(self) -> set[str]:
        """The source field names this map reads."""
        return {v for v in dataclasses.astuple(self) if v is not None}


#: MultiHop-RAG articles: ``body`` is the text; the url (unique, and the key its evidence
#: lists use) is the id; author, source and category go into metadata.
MULTIHOP_RAG_FIELDS = FieldMap(id="url", title="title", text="body", url="url",
                               published_at="published_at")


def _default_fields(first: Mapping[str, Any]) -> FieldMap:
    # Without a map, take a conventional id field when the records have one.
    id_field = next((k for k in ("id", "_id", "doc_id", "docid") if k in first), None)
    return FieldMap(id=id_field)


def _iter_objects(path: Path) -> Iterator[tuple[int | None, str, dict[str, Any]]]:
    """Yield ``(line or None, where, record)``; ``where`` names the record in messages."""
    if not path.is_file():
        raise FormatError(path, None, "file not found; expected a .json list or .jsonl file")
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if path.suffix.lower() in (".jsonl", ".ndjson") or not head.startswith(b"["):
        for line, obj in iter_jsonl(path):
            yield line, f"line {line}", obj
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise FormatError(path, None, "not valid UTF-8; save the file as UTF-8") from e
    except json.JSONDecodeError as e:
        raise FormatError(path, e.lineno, f"invalid JSON ({e.msg} at column {e.colno})") from e
    for n, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise FormatError(path, None, f"record {n}: expected a JSON object, "
                              f"found {type(obj).__name__}")
        yield None, f"record {n}", obj


def _parse_time(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str):
        raise ValueError(type(value).__name__)
    # fromisoformat takes at most 6 fractional digits; nanosecond stamps carry 9.
    return as_utc(_FRACTION.sub(lambda m: m.group(0)[:7], value.strip()))


_FRACTION = re.compile(r"\.\d{7,}")


class _Record:
    """One source record being turned into a :class:`Doc`; knows how to name itself."""

    def __init__(self, obj: dict[str, Any], path: Path, line: int | None, where: str) -> None:
        self.obj, self.path, self.line, self.where = obj, path, line, where

    def error(self, msg: str) -> FormatError:
        # JSON Lines errors carry the line; a JSON list's carry the record number instead.
        return FormatError(self.path, self.line, msg if self.line else f"{self.where}: {msg}")

    def string(self, key: str | None, *, required: bool, is_id: bool = False) -> str | None:
        if key is None:
            return None
        value = self.obj.get(key)
        if value is None:
            if required:
                raise self.error(f'missing field "{key}"; every record needs it '
                                 "(or map another field with fields=)")
            return None
        if is_id and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise self.error(f'field "{key}" is {type(value).__name__}; expected a string')
        return value

    def to_doc(self, fmap: FieldMap) -> Doc:
        text = self.string(fmap.text, required=True) or ""
        url = self.string(fmap.url, required=False)
        doc_id = self.string(fmap.id, required=True, is_id=True)
        if doc_id is None:
            canonical = json.dumps(self.obj, sort_keys=True, ensure_ascii=False)
            doc_id = url or "sha1:" + hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:16]
        published = None
        raw = self.obj.get(fmap.published_at) if fmap.published_at else None
        if raw is not None:
            try:
                published = _parse_time(raw)
            except (ValueError, OverflowError, OSError):
                raise self.error(
                    f'field "{fmap.published_at}" value {raw!r} is not a date; expected '
                    "ISO 8601 such as 2023-11-27T08:45:59Z, or Unix seconds") from None
        mapped = fmap.mapped()
        return Doc(
            id=doc_id,
            text=text,
            title=self.string(fmap.title, required=False) or "",
            url=url,
            published_at=published,
            metadata={k: v for k, v in self.obj.items() if k not in mapped},
        )


def read_records(path: str | Path, *,
                 fields: FieldMap | Mapping[str, str] | None = None) -> Iterator[Doc]:
    """Yield a :class:`Doc` per record of a JSON list or JSON Lines file, in file order.

    Args:
        path: A ``.json`` file holding a list of objects, or a ``.jsonl`` file.
        fields: Which source field is which; a :class:`FieldMap`, a mapping like
            ``{"text": "body", "id": "url"}``, or ``None`` for the defaults (``text``,
            ``title``, ``url``, ``published_at``, and ``id``/``_id``/``doc_id``/``docid``
            when the first record has one).

    Raises:
        FormatError: Bad JSON, a missing required field, a mistyped field, an unreadable
            date, or two records with the same id; it names the file, the line (JSON Lines)
            or record number (JSON list), and the field.

    Example:
        >>> docs = list(read_records("corpus.json", fields=MULTIHOP_RAG_FIELDS))  # doctest: +SKIP
    """
    # Check the field map now, not at the first next(): a bad map is the caller's mistake.
    return _read(Path(path), FieldMap.coerce(fields))


def _read(path: Path, fmap: FieldMap | None) -> Iterator[Doc]:
    seen: dict[str, str] = {}
    for line, where, obj in _iter_objects(path):
        if fmap is None:
            fmap = _default_fields(obj)
        record = _Record(obj, path, line, where)
        doc = record.to_doc(fmap)
        if doc.id in seen:
            raise record.error(f'duplicate document id "{doc.id}" (first at {seen[doc.id]}); '
                               "ids must be unique: map a unique id field or remove the repeat")
        seen[doc.id] = where
        yield doc
