"""RealTime QA (Kasai et al., 2023): dated news questions with timestamped search results.

Each weekly release ``YYYYMMDD`` is three JSON Lines files in one folder: ``_qa`` (the
questions), ``_gcs`` (the web search results stored for each question at the time) and
``_gold`` (the gold evidence articles). :func:`load_realtimeqa` reads them into plain
records, and :func:`pooled_docs` turns the search results into one deduplicated,
timestamped corpus.

Example:
    >>> qs = load_realtimeqa("../shared/data/realtimeqa/past/2022")  # doctest: +SKIP
    >>> len(qs), qs[0].date.isoformat()  # doctest: +SKIP
    (459, '2022-06-16')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pursuit.indexes.errors import FormatError
from pursuit.indexes.records import Doc
from pursuit.indexes.sources.jsonrecords import iter_jsonl

_WEEK = re.compile(r"^(\d{8})_qa\.jsonl$")


def normalise_url(url: str) -> str:
    """A url as a comparison key: no scheme, ``www.``, query, fragment or trailing slash.

    Example:
        >>> normalise_url("https://www.CNN.com/2022/06/12/x/index.html?utm=1#top")
        'cnn.com/2022/06/12/x/index.html'
    """
    parts = urlsplit(url.strip())
    host = parts.netloc.lower().removeprefix("www.")
    return host + parts.path.rstrip("/")


@dataclass(frozen=True)
class Article:
    """A search result or gold article; fields missing from the source are empty/None."""

    url: str
    title: str
    text: str
    authors: tuple[str, ...]
    published: date | None


@dataclass(frozen=True)
class RealtimeQuestion:
    """One RealTime QA question with its stored search results and gold evidence.

    Attributes:
        id: ``question_id`` (``YYYYMMDD_n``).
        week: The release it comes from (``YYYYMMDD``).
        date: ``question_date``, the day the quiz asked it.
        sentence: The question.
        choices / answers: Multiple-choice options and the indices of the right ones.
        source / url / evidence: Where the question came from; evidence is HTML.
        search_time: When the search results were fetched (as in the file).
        results: The stored search results, in rank order.
        gold: The gold evidence articles (often none).
    """

    id: str
    week: str
    date: date
    sentence: str
    choices: tuple[str, ...]
    answers: tuple[int, ...]
    source: str
    url: str
    evidence: str
    search_time: str
    results: tuple[Article, ...]
    gold: tuple[Article, ...]


def realtimeqa_weeks(root: str | Path) -> list[str]:
    """The releases (``YYYYMMDD``) in ``root`` that have a ``_qa.jsonl`` file, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FormatError(root, None, "folder not found; expected RealTime QA weekly files")
    return sorted(m.group(1) for p in root.iterdir() if (m := _WEEK.match(p.name)))


def _str(obj: Mapping[str, Any], key: str, path: Path, line: int, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise FormatError(path, line, f'field "{key}" must be a string')
    return value


def _day(value: str, key: str, path: Path, line: int) -> date:
    try:
        return datetime.strptime(value[:10], "%Y/%m/%d").date()
    except ValueError:
        raise FormatError(path, line, f'field "{key}" must be a date YYYY/MM/DD, got '
                                      f'{value!r}') from None


def _articles(obj: Mapping[str, Any], path: Path, line: int) -> tuple[Article, ...]:
    items = obj.get("search_result")
    if not isinstance(items, list):
        raise FormatError(path, line, 'field "search_result" must be a list')
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise FormatError(path, line, '"search_result" entries must be JSON objects')
        authors = item.get("authors") or []
        if not isinstance(authors, list) or not all(isinstance(a, str) for a in authors):
            raise FormatError(path, line, 'field "authors" must be a list of strings')
        published = _str(item, "publish_date", path, line, required=False)
        out.append(Article(_str(item, "url", path, line),
                           _str(item, "title", path, line, required=False),
                           _str(item, "text", path, line, required=False), tuple(authors),
                           _day(published, "publish_date", path, line) if published else None))
    return tuple(out)


def _by_question(path: Path) -> dict[str, tuple[str, tuple[Article, ...]]]:
    out: dict[str, tuple[str, tuple[Article, ...]]] = {}
    for line, obj in iter_jsonl(path):
        qid = _str(obj, "question_id", path, line)
        if qid in out:
            raise FormatError(path, line, f"question_id {qid!r} appears twice")
        out[qid] = (_str(obj, "search_time", path, line, required=False),
                    _articles(obj, path, line))
    return out


def _question(obj: Mapping[str, Any], week: str, path: Path, line: int,
              results: Mapping[str, tuple[str, tuple[Article, ...]]],
              gold: Mapping[str, tuple[str, tuple[Article, ...]]]) -> RealtimeQuestion:
    qid = _str(obj, "question_id", path, line)
    choices = obj.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise FormatError(path, line, 'field "choices" must be a list of strings')
    try:
        answers = tuple(int(a) for a in obj.get("answer") or [])
    except (TypeError, ValueError):
        raise FormatError(path, line, 'field "answer" must list choice indices') from None
    if not answers or any(not 0 <= a < len(choices) for a in answers):
        raise FormatError(path, line, f"answer {list(answers)} is not a valid index into "
                                      f"{len(choices)} choices")
    if qid not in results:
        raise FormatError(path, line, f"question {qid} has no entry in {week}_gcs.jsonl")
    search_time, found = results[qid]
    return RealtimeQuestion(
        qid, week, _day(_str(obj, "question_date", path, line), "question_date", path, line),
        _str(obj, "question_sentence", path, line), tuple(choices), answers,
        _str(obj, "question_source", path, line, required=False),
        _str(obj, "question_url", path, line, required=False),
        _str(obj, "evidence", path, line, required=False), search_time, found,
        gold.get(qid, ("", ()))[1])


def load_realtimeqa(root: str | Path, weeks: Sequence[str] | None = None) -> list[RealtimeQuestion]:
    """The questions of the given releases (default: every one in ``root``), in file order.

    Raises:
        FormatError: A missing file, a malformed line (names file and line), a repeated
            question id, an answer index outside the choices, or a question without
            search results.
    """
    root = Path(root)
    out: list[RealtimeQuestion] = []
    for week in weeks if weeks is not None else realtimeqa_weeks(root):
        results = _by_question(root / f"{week}_gcs.jsonl")
        gold = _by_question(root / f"{week}_gold.jsonl")
        path = root / f"{week}_qa.jsonl"
        out.extend(_question(obj, week, path, line, results, gold)
                   for line, obj in iter_jsonl(path))
    seen: set[str] = set()
    for q in out:
        if q.id in seen:
            raise FormatError(root, None, f"question_id {q.id!r} appears in two releases")
        seen.add(q.id)
    return out


def _when(day: date | None) -> datetime | None:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None


def pooled_docs(questions: Iterable[RealtimeQuestion], *, gold: bool = False) -> list[Doc]:
    """One document per normalised url over all search results (and gold articles if asked).

    The id is the normalised url; the first record of a url gives title and text. When
    records of one url disagree on the date, the latest wins, so an "as of" filter never
    admits a document earlier than some record says it appeared. A date becomes midnight
    UTC; articles without a date are kept with ``published_at=None`` (so they never pass
    an "as of" filter). Gold articles without text are skipped.
    """
    docs: dict[str, Doc] = {}
    for q in questions:
        for art in q.results + (tuple(a for a in q.gold if a.text) if gold else ()):
            key = normalise_url(art.url)
            when = _when(art.published)
            old = docs.get(key)
            if old is None:
                docs[key] = Doc(key, art.text, art.title, art.url, when,
                                {"authors": list(art.authors)})
            elif when is not None and (old.published_at is None or when > old.published_at):
                docs[key] = Doc(key, old.text, old.title, old.url, when, old.metadata)
    return list(docs.values())
