"""Turn what a user names as a corpus (``pursuit index SOURCE``) into documents.

A SOURCE is one of:

* ``pydocs``: the demo corpus, the local Python installation's documentation;
* a BEIR folder (it holds ``corpus.jsonl``);
* a ``.json`` list or ``.jsonl`` file of records, read with an optional field map;
* a folder of ``.txt`` / ``.md`` / ``.html`` files, or one such file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

from pursuit.indexes.datasets.beir import read_corpus_jsonl
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc
from pursuit.indexes.sources.folders import TEXT_SUFFIXES, list_files, read_file, read_folder
from pursuit.indexes.sources.jsonrecords import (
    MULTIHOP_RAG_FIELDS,
    FieldMap,
    iter_jsonl,
    read_records,
)
from pursuit.indexes.sources.pydocs import PYTHON_VERSION, python_docs

DEMO_SOURCE = "pydocs"
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
#: Field map presets, chosen with ``{"preset": name}`` (CLI: ``--field preset=NAME``).
FIELD_PRESETS: dict[str, FieldMap] = {"multihop-rag": MULTIHOP_RAG_FIELDS}
ACCEPTED = (
    f"SOURCE may be '{DEMO_SOURCE}' (the demo corpus: this Python's own documentation), "
    "a BEIR folder (holding corpus.jsonl), a .json/.jsonl file of records, or a folder of "
    f"{'/'.join(TEXT_SUFFIXES)} files"
)


def resolve_fields(fields: FieldMap | Mapping[str, str] | None) -> FieldMap | None:
    """A :class:`FieldMap` from a map, a mapping, or a mapping with a ``preset`` key.

    Example:
        >>> resolve_fields({"preset": "multihop-rag", "title": "headline"}).title
        'headline'
    """
    if fields is None or isinstance(fields, FieldMap):
        return fields
    rest = dict(fields)
    preset = rest.pop("preset", None)
    if preset is None:
        return FieldMap.coerce(rest)
    if preset not in FIELD_PRESETS:
        raise PursuitError(f"unknown field preset '{preset}'; presets: "
                           f"{', '.join(sorted(FIELD_PRESETS))}")
    base = FIELD_PRESETS[preset]
    overrides = FieldMap.coerce(rest)  # validates the keys
    assert overrides is not None
    return dataclasses.replace(base, **{k: getattr(overrides, k) for k in rest})


def _is_beir_corpus_file(path: Path) -> bool:
    # A BEIR corpus.jsonl read as plain records would bury its metadata one level down.
    if path.suffix.lower() != ".jsonl":
        return False
    first = next(iter_jsonl(path), None)
    return first is not None and "_id" in first[1] and "text" in first[1]


def load_corpus(source: str | Path, *,
                fields: FieldMap | Mapping[str, str] | None = None) -> tuple[str, Iterable[Doc]]:
    """Open a corpus source; return a label for messages and the documents (read lazily).

    Args:
        source: ``"pydocs"``, a BEIR folder, a ``.json``/``.jsonl`` file, or a folder of
            text files (or one text file).
        fields: Field map for JSON records (a :class:`FieldMap`, a mapping such as
            ``{"text": "body"}``, or ``{"preset": "multihop-rag"}``); only JSON sources
            take one.

    Returns:
        ``(label, docs)``: a short description such as ``"BEIR corpus scifact"`` and an
        iterable of :class:`Doc` that reads the source as it is consumed.

    Raises:
        PursuitError: The source does not exist, is of no accepted kind, or got a field
            map it cannot use. Reading errors surface as ``FormatError`` while iterating.

    Example:
        >>> label, docs = load_corpus("pydocs")   # doctest: +SKIP
    """
    fmap = resolve_fields(fields)
    if str(source) == DEMO_SOURCE and not Path(source).exists():
        _no_fields(fmap, DEMO_SOURCE)
        return f"the Python {PYTHON_VERSION} documentation (pydocs)", python_docs()
    path = Path(source)
    if not path.exists():
        raise PursuitError(f"cannot read corpus '{source}': no such file or folder. {ACCEPTED}.")
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            _no_fields(fmap, "a BEIR folder")
            return f"BEIR corpus {path.name}", read_corpus_jsonl(path / "corpus.jsonl")
        if not list_files(path):
            raise PursuitError(f"cannot read corpus '{source}': the folder holds no "
                               f"{'/'.join(TEXT_SUFFIXES)} files and no corpus.jsonl. {ACCEPTED}.")
        _no_fields(fmap, "a folder of files")
        return f"folder {path}", read_folder(path)
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        if fmap is None and _is_beir_corpus_file(path):
            return f"BEIR corpus file {path.name}", read_corpus_jsonl(path)
        return f"records in {path.name}", read_records(path, fields=fmap)
    if suffix in TEXT_SUFFIXES:
        _no_fields(fmap, "a text file")
        return f"file {path.name}", [read_file(path)]
    raise PursuitError(f"cannot read corpus '{source}': unknown file type '{path.suffix}'. "
                       f"{ACCEPTED}.")


def _no_fields(fmap: FieldMap | None, what: str) -> None:
    if fmap is not None:
        raise PursuitError(f"a field map applies to .json/.jsonl records only, not to {what}; "
                           "drop --field")
