"""The versioned ``manifest.json`` that every index directory carries.

The manifest records how an index was built: the corpus it holds (source, hash, size),
each component's configuration (BM25 parameters, encoder, FAISS factory string), and the
versions of the packages that built it. Opening an index reads it first, so a damaged or
mismatched index is reported before anything else is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pursuit.indexes.errors import IndexError_
from pursuit.indexes.records import Doc

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_PACKAGES = ("pursuit", "numpy", "bm25s", "PyStemmer", "faiss-cpu", "torch", "transformers",
             "sentence-transformers")


def rebuild_hint(path: str | Path, source: str | None = None) -> str:
    """The command that rebuilds the index at ``path``."""
    return f"rebuild it with: pursuit index {source or 'SOURCE'} --out {path}"


def add_vectors_hint(path: str | Path, encoder: str | None = None) -> str:
    """The command that adds dense vectors to the index at ``path``."""
    return f"add them with: pursuit add-vectors {path}" + (f" --encoder {encoder}"
                                                          if encoder else "")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape an index's contents."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def corpus_hash(docs: Iterable[Doc]) -> str:
    """A sha256 of a corpus that does not depend on document order.

    Each document contributes the hash of its id, title, text, url and date; the
    per-document hashes are sorted and hashed again, so the same set of documents always
    gives the same value, whatever order they were added in.
    """
    per_doc = []
    for d in docs:
        date = d.published_at.isoformat() if d.published_at else ""
        payload = "\x1f".join((d.id, d.title, d.text, d.url or "", date))
        per_doc.append(hashlib.sha256(payload.encode("utf-8")).digest())
    total = hashlib.sha256()
    for digest in sorted(per_doc):
        total.update(digest)
    return total.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


#: The JSON type each manifest field must have (a damaged file says which one is wrong).
_FIELD_TYPES: dict[str, type] = {"source": str, "corpus_sha256": str, "n_docs": int,
                                 "components": dict, "packages": dict, "created_at": str,
                                 "updated_at": str}
_KIND_NAMES = {str: "a string", int: "a whole number", dict: "an object"}


@dataclass(frozen=True)
class Manifest:
    """The contents of ``manifest.json``.

    Attributes:
        source: What the corpus was read from (a path, or ``pydocs``).
        corpus_sha256: :func:`corpus_hash` of the documents now in the index.
        n_docs: Number of live documents.
        components: Component name (``store``, ``bm25``, ``dense``) -> its configuration;
            an index built without an encoder has no ``dense`` entry until
            ``pursuit add-vectors`` adds one.
        packages: Package versions at the last write.
        created_at / updated_at: ISO timestamps (UTC).
        format_version: Layout version of the index directory.
    """

    source: str
    corpus_sha256: str
    n_docs: int
    components: Mapping[str, Mapping[str, Any]]
    packages: Mapping[str, str] = field(default_factory=package_versions)
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    format_version: int = FORMAT_VERSION

    def updated(self, **changes: Any) -> Manifest:
        """A copy with ``changes`` applied, the update time and package versions refreshed."""
        return replace(self, **changes, updated_at=_now(), packages=package_versions())

    def write(self, directory: Path) -> None:
        """Write ``manifest.json`` atomically (temporary file, then rename)."""
        target = Path(directory) / MANIFEST_NAME
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, target)

    @classmethod
    def read(cls, directory: str | Path) -> Manifest:
        """Read and validate ``manifest.json`` of an index directory.

        Raises:
            IndexError_: the directory or manifest is missing, unreadable, of another
                format version, or lacks a field; the message names the rebuild command.
        """
        directory = Path(directory)
        path = directory / MANIFEST_NAME
        if not directory.is_dir():
            raise IndexError_(f"no index at {directory}: the directory does not exist; "
                              f"build one with: pursuit index SOURCE --out {directory}")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise IndexError_(f"{path} is missing, so {directory} is not a pursuit index "
                              f"(or its build never finished); {rebuild_hint(directory)}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexError_(f"{path} is damaged ({exc}); {rebuild_hint(directory)}") from exc
        if not isinstance(raw, dict):
            raise IndexError_(f"{path} is damaged (not a JSON object); {rebuild_hint(directory)}")
        source = raw.get("source") if isinstance(raw.get("source"), str) else None
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexError_(f"{path} has format version {version!r}, this pursuit reads "
                              f"version {FORMAT_VERSION}; {rebuild_hint(directory, source)}")
        try:
            values = {k: raw[k] for k in cls.__dataclass_fields__}
        except KeyError as exc:
            raise IndexError_(f"{path} lacks the field {exc.args[0]!r}; "
                              f"{rebuild_hint(directory, source)}") from None
        for key, kind in _FIELD_TYPES.items():
            value = values[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise IndexError_(f"{path} is damaged: {key!r} should be "
                                  f"{_KIND_NAMES[kind]}, found {json.dumps(value)[:60]}; "
                                  f"{rebuild_hint(directory, source)}")
        if not all(isinstance(v, dict) for v in values["components"].values()):
            raise IndexError_(f"{path} is damaged: every component should be an object; "
                              f"{rebuild_hint(directory, source)}")
        return cls(**values)
