"""Read documents from a JSON list or a JSON Lines file, with a map of which field is what.

A :class:`FieldMap` says which source field holds the id, title, text, url and publication
time; every other field of a record goes into ``Doc.metadata``. :data:`MULTIHOP_RAG_FIELDS`
is the preset for the MultiHop-RAG corpus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pursuit.indexes.errors import FormatError


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
