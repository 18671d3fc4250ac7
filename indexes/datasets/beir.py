"""Read and write datasets in the BEIR layout.

A BEIR folder holds::

    corpus.jsonl      {"_id": str, "title": str, "text": str, "metadata": {...}} per line
    queries.jsonl     {"_id": str, "text": str, "metadata": {...}} per line
    qrels/<split>.tsv query-id <TAB> corpus-id <TAB> score, after a header row

``queries.jsonl`` may hold the queries of every split (SciFact's holds train and test), so
:func:`read_beir` keeps only the queries that the chosen split's qrels judge.

BEIR evaluates with one convention of its own: a retrieved document whose id equals the
query id is not counted (on ArguAna, Quora or SciDocs a query is itself a corpus document
and would otherwise find itself at rank 1). :func:`read_beir` marks its datasets with
``drop_identical_ids=True`` so that evaluation follows it; see
:mod:`pursuit.retrievers.evaluation.identical_ids`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pursuit.indexes.errors import FormatError
from pursuit.indexes.records import Doc, Query
from pursuit.indexes.sources.jsonrecords import iter_jsonl

QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclass(frozen=True)
class Dataset:
    """A retrieval test collection.

    Attributes:
        name: Short name, e.g. ``"beir-scifact"``.
        corpus: The documents, in file order.
        queries: The queries judged in the split, in file order.
        qrels: Query id -> doc id -> graded relevance.
        drop_identical_ids: Evaluation convention: leave a query's own document (the one
            whose id equals the query id) out of its ranking, as BEIR and Anserini do.
            ``True`` for datasets read from BEIR folders, ``False`` by default.
    """

    name: str
    corpus: list[Doc]
    queries: list[Query]
    qrels: dict[str, dict[str, int]]
    drop_identical_ids: bool = False


def _string_field(obj: Mapping[str, Any], key: str, path: Path, line: int, *,
                  required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise FormatError(path, line, f'missing field "{key}"; every record needs "{key}"')
        return ""
    # Some BEIR exports write numeric ids; they are still ids, so take them as text.
    if isinstance(value, int) and not isinstance(value, bool) and key == "_id":
        return str(value)
    if not isinstance(value, str):
        raise FormatError(
            path, line, f'field "{key}" is {type(value).__name__}; expected a string'
        )
    return value


def _metadata(obj: Mapping[str, Any], path: Path, line: int) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise FormatError(
            path, line, f'field "metadata" is {type(meta).__name__}; expected a JSON object'
        )
    return meta


def _unique_id(obj: Mapping[str, Any], seen: dict[str, int], kind: str, path: Path,
               line: int) -> str:
    """The row's ``_id``, recorded in ``seen`` (id → line); a repeated one is refused."""
    row_id = _string_field(obj, "_id", path, line, required=True)
    if row_id in seen:
        raise FormatError(path, line, f'duplicate {kind} id "{row_id}" (first on line '
                                      f"{seen[row_id]}); {kind} ids must be unique")
    seen[row_id] = line
    return row_id


def read_corpus_jsonl(path: str | Path) -> Iterator[Doc]:
    """Yield the documents of a BEIR ``corpus.jsonl`` in file order.

    ``_id`` and ``text`` are required; ``title`` defaults to ``""`` and ``metadata`` to
    ``{}``.

    Args:
        path: The ``corpus.jsonl`` file.

    Raises:
        FormatError: Bad JSON, a missing or mistyped field, or a repeated ``_id``.
    """
    path = Path(path)
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        doc_id = _unique_id(obj, seen, "document", path, line)
        yield Doc(
            id=doc_id,
            text=_string_field(obj, "text", path, line, required=True),
            title=_string_field(obj, "title", path, line, required=False),
            metadata=_metadata(obj, path, line),
        )


def read_queries_jsonl(path: str | Path) -> Iterator[Query]:
    """Yield the queries of a BEIR ``queries.jsonl`` in file order.

    Raises:
        FormatError: Bad JSON, a missing or mistyped field, or a repeated ``_id``.
    """
    path = Path(path)
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        qid = _unique_id(obj, seen, "query", path, line)
        yield Query(qid, _string_field(obj, "text", path, line, required=True),
                    _metadata(obj, path, line))


def read_qrels_tsv(path: str | Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels file: ``query-id\\tcorpus-id\\tscore`` rows after a header row.

    The header row is optional (it is recognised by its column names). Scores must be
    integers; a repeated (query, document) pair is an error.

    Raises:
        FormatError: Missing file, wrong column count, a non-integer score or a repeat.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, None, "qrels file not found; expected query-id, corpus-id, "
                          "score separated by tabs")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as f:
        for line, row in enumerate(f, start=1):
            if not row.strip():
                continue
            cols = row.rstrip("\r\n").split("\t")
            if line == 1 and tuple(c.strip().lower() for c in cols) == QRELS_HEADER:
                continue
            if len(cols) != 3:
                raise FormatError(
                    path, line, f"expected 3 tab-separated columns (query-id, corpus-id, score), "
                    f"found {len(cols)}"
                )
            qid, doc_id, score = (c.strip() for c in cols)
            if not qid or not doc_id:
                raise FormatError(path, line, "empty query-id or corpus-id")
            try:
                rel = int(score)
            except ValueError:
                raise FormatError(
                    path, line, f'score "{score}" is not an integer; expected a relevance grade '
                    "such as 0, 1 or 2"
                ) from None
            judged = qrels.setdefault(qid, {})
            if doc_id in judged:
                raise FormatError(path, line, f'pair ({qid}, {doc_id}) is judged twice')
            judged[doc_id] = rel
    return qrels


def read_beir(folder: str | Path, split: str = "test", *, name: str | None = None) -> Dataset:
    """Read a BEIR dataset folder.

    Args:
        folder: Folder holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/``.
        split: Which ``qrels/<split>.tsv`` to use; only queries it judges are kept.
        name: Dataset name; defaults to the folder name.

    Returns:
        The corpus in file order, the split's queries in ``queries.jsonl`` order, the qrels,
        and ``drop_identical_ids=True`` (BEIR's evaluation convention).

    Raises:
        FormatError: A missing or malformed file, or a qrels query id that
            ``queries.jsonl`` lacks.

    Example:
        >>> ds = read_beir("../shared/data/beir-scifact")  # doctest: +SKIP
        >>> len(ds.corpus), len(ds.queries)                 # doctest: +SKIP
        (5183, 300)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError(folder, None, "not a folder; expected a BEIR folder with "
                          "corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise FormatError(qrels_path, None, f'no qrels for split "{split}"; '
                          f"splits present: {', '.join(have) or 'none'}")
    qrels = read_qrels_tsv(qrels_path)
    corpus = list(read_corpus_jsonl(folder / "corpus.jsonl"))
    queries = [q for q in read_queries_jsonl(folder / "queries.jsonl") if q.id in qrels]
    missing = sorted(set(qrels) - {q.id for q in queries})
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FormatError(qrels_path, None, f"{len(missing)} judged query id(s) are not in "
                          f"queries.jsonl: {shown}")
    return Dataset(name or folder.name, corpus, queries, qrels, drop_identical_ids=True)


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def write_beir(dataset: Dataset, folder: str | Path, split: str = "test") -> Path:
    """Write ``dataset`` as a BEIR folder that :func:`read_beir` reads back unchanged.

    BEIR has no url or date fields: a document's ``url`` and ``published_at`` (ISO 8601)
    are written into its ``metadata`` under those keys when set, so nothing is lost.

    Args:
        dataset: The dataset to write.
        folder: Target folder; created if missing, existing files are overwritten.
        split: Name of the qrels file, ``qrels/<split>.tsv``.

    Returns:
        The folder.
    """
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)

    def doc_row(d: Doc) -> dict[str, Any]:
        meta = dict(d.metadata)
        if d.url is not None:
            meta["url"] = d.url
        if d.published_at is not None:
            meta["published_at"] = d.published_at.isoformat()
        return {"_id": d.id, "title": d.title, "text": d.text, "metadata": meta}

    _write_jsonl(folder / "corpus.jsonl", (doc_row(d) for d in dataset.corpus))
    _write_jsonl(folder / "queries.jsonl",
                 ({"_id": q.id, "text": q.text, "metadata": dict(q.metadata)}
                  for q in dataset.queries))
    with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as f:
        f.write("\t".join(QRELS_HEADER) + "\n")
        for qid, judged in dataset.qrels.items():
            for doc_id, rel in judged.items():
                f.write(f"{qid}\t{doc_id}\t{rel}\n")
    return folder
