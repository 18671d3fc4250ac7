"""TREC run and qrels files, the formats ``trec_eval`` and ``ir_measures`` read.

A run line is ``qid Q0 docid rank score tag``; a qrels line is ``qid 0 docid rel``. Fields
are separated by whitespace, so ids and tags must not contain any.

Evaluation tools sort a run by score, not by rank, and break ties by doc id. To keep a
ranking's order when it is read back, :func:`write_run` writes scores that strictly
decrease within each query; how it does that is described there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path

from pursuit.indexes.errors import FormatError
from pursuit.indexes.records import Query, Ranking, strictly_decreasing


def _check_token(value: str, what: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{what} {value!r} is empty or holds whitespace; TREC files "
                         "separate fields by whitespace, so rename it")


def _strictly_decreasing(scores: Sequence[float], digits: int | None) -> list[str]:
    """Format scores so each is strictly below the one before it.

    With ``digits=None`` every score is written as Python's shortest round-trip form
    (``repr``), so the file holds the exact float. A score that is not below the previous
    written one *at single precision* (a tie, or a ranking out of score order) is lowered
    to the next float32 below the previous one. Single precision because some readers
    (pytrec_eval) parse scores as float32, where a one-ulp double step would still tie
    and the tie would be re-sorted by document id.

    With ``digits=n`` scores are rounded to ``n`` decimals, and a score that is not below
    the previous written one becomes the previous one minus ``10**-n``, the smallest step
    that format can show.
    """
    out: list[str] = []
    if digits is None:
        values = [float(v) for v in scores]
        for v in values:
            if not math.isfinite(v):
                raise ValueError(f"score {v} is not finite; TREC runs need finite scores")
        return [repr(v) for v in strictly_decreasing(values)]
    prev_u: int | None = None
    for s in scores:
        if not math.isfinite(s):
            raise ValueError(f"score {s} is not finite; TREC runs need finite scores")
        # Work in integer units of 10**-digits so the comparison sees what is written.
        units = int(Decimal(repr(float(s))).scaleb(digits).to_integral_value())
        if prev_u is not None and units >= prev_u:
            units = prev_u - 1
        out.append(f"{Decimal(units).scaleb(-digits):.{digits}f}")
        prev_u = units
    return out


def write_run(rankings: Sequence[Ranking], path: str | Path, tag: str, *,
              digits: int | None = None) -> Path:
    """Write rankings as a TREC run file, ranks from 1, in the rankings' order.

    Scores are written strictly decreasing within each query so that tools which re-sort
    by score keep the ranking's order; ties are broken by lowering a score by the smallest
    step the chosen format can show (see :func:`_strictly_decreasing`).

    Args:
        rankings: One ranking per query; query ids must be distinct.
        path: The file to write (overwritten).
        tag: Run name written in the last column; no whitespace.
        digits: Decimals per score; ``None`` writes each float exactly.

    Returns:
        The path written.

    Raises:
        ValueError: An id or tag with whitespace, a repeated query or doc id, a NaN score.

    Example:
        >>> write_run(rankings, "bm25.run", "bm25")  # doctest: +SKIP
    """
    _check_token(tag, "run tag")
    path = Path(path)
    seen_q: set[str] = set()
    lines: list[str] = []
    for ranking in rankings:
        qid = ranking.query.id
        _check_token(qid, "query id")
        if qid in seen_q:
            raise ValueError(f"query id {qid!r} has two rankings; a run holds one per query")
        seen_q.add(qid)
        doc_ids = ranking.doc_ids()
        if len(set(doc_ids)) != len(doc_ids):
            raise ValueError(f"ranking for query {qid!r} lists a document twice")
        for doc_id in doc_ids:
            _check_token(doc_id, "doc id")
        written = _strictly_decreasing([h.score for h in ranking.hits], digits)
        lines.extend(f"{qid} Q0 {d} {r} {s} {tag}\n"
                     for r, (d, s) in enumerate(zip(doc_ids, written, strict=True), start=1))
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _lines(path: Path, kind: str) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise FormatError(path, None, f"{kind} file not found")
    out: list[tuple[int, list[str]]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                out.append((lineno, line.split()))
    return out


def read_run(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a TREC run file into query id -> doc id -> score (in file order).

    Raises:
        FormatError: A line without the six fields ``qid Q0 docid rank score tag``, a
            non-numeric rank or score, or a document listed twice for one query.
    """
    path = Path(path)
    run: dict[str, dict[str, float]] = {}
    for lineno, cols in _lines(path, "run"):
        if len(cols) != 6:
            raise FormatError(path, lineno, f"expected 6 fields (qid Q0 docid rank score tag), "
                              f"found {len(cols)}")
        qid, _, doc_id, rank, score, _tag = cols
        try:
            int(rank)
        except ValueError:
            raise FormatError(path, lineno, f'rank "{rank}" is not an integer') from None
        try:
            value = float(score)
        except ValueError:
            raise FormatError(path, lineno, f'score "{score}" is not a number') from None
        docs = run.setdefault(qid, {})
        if doc_id in docs:
            raise FormatError(path, lineno, f'document "{doc_id}" appears twice for query "{qid}"')
        docs[doc_id] = value
    return run


def read_run_rankings(path: str | Path, *, queries: Mapping[str, Query] | None = None,
                      pipeline: str | None = None) -> list[Ranking]:
    """Read a TREC run file as rankings, one per query in file order.

    Args:
        path: The run file.
        queries: Query id -> query, to attach the query texts; otherwise texts are empty.
        pipeline: Provenance name; defaults to the file name.
    """
    path = Path(path)
    return [
        Ranking.from_scores(queries[qid] if queries and qid in queries else Query(qid, ""),
                            scores.items(), pipeline=pipeline or path.name)
        for qid, scores in read_run(path).items()
    ]


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Read a TREC qrels file (``qid iteration docid rel``) into query id -> doc id -> rel.

    Raises:
        FormatError: A line without four fields, a non-integer relevance, or a repeated
            (query, document) pair.
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    for lineno, cols in _lines(path, "qrels"):
        if len(cols) != 4:
            raise FormatError(path, lineno, f"expected 4 fields (qid iteration docid relevance), "
                              f"found {len(cols)}")
        qid, _, doc_id, rel = cols
        try:
            grade = int(rel)
        except ValueError:
            raise FormatError(path, lineno, f'relevance "{rel}" is not an integer') from None
        judged = qrels.setdefault(qid, {})
        if doc_id in judged:
            raise FormatError(path, lineno, f"pair ({qid}, {doc_id}) is judged twice")
        judged[doc_id] = grade
    return qrels


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: str | Path) -> Path:
    """Write qrels as ``qid 0 docid rel`` lines, in the mapping's order.

    Raises:
        ValueError: An id with whitespace.
    """
    path = Path(path)
    lines: list[str] = []
    for qid, judged in qrels.items():
        _check_token(qid, "query id")
        for doc_id, rel in judged.items():
            _check_token(doc_id, "doc id")
            lines.append(f"{qid} 0 {doc_id} {int(rel)}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path
