"""Loaders for the agent's evaluation data: ClariQ, InteractComp and MultiHop-RAG queries.

Each loader takes the dataset folder (``../shared/data/<name>``) and returns frozen records.
Nothing is cached or written: InteractComp is decrypted in memory on every load, because
its release is encrypted to keep the benchmark out of crawled training data, and a
plaintext copy on disk would defeat that.

Example:
    >>> topics = load_clariq(Path("../shared/data/clariq"), "dev")  # doctest: +SKIP
    >>> len(topics), topics[0].need
    (50, 2)
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pursuit.indexes.errors import FormatError
from pursuit.indexes.sources.jsonrecords import iter_jsonl

__all__ = [
    "ClariqFacet", "ClariqTopic", "Evidence", "InteractTask", "MultihopQuery",
    "NO_QUESTION", "load_clariq", "load_interactcomp", "load_multihop_queries",
    "load_question_bank",
]

#: ClariQ's id for "ask nothing"; it has the empty question text.
NO_QUESTION = "Q00001"

CLARIQ_COLUMNS = ("topic_id", "initial_request", "topic_desc", "clarification_need",
                  "facet_id", "facet_desc", "question_id", "question", "answer")
INTERACTCOMP_FILE = "InteractComp210.dev.encrypted.jsonl"
MULTIHOP_TYPES = ("inference", "comparison", "temporal", "null_query")
# The file says "inference_query" etc.; the agent's contract uses the short names above
# (``null_query`` keeps its suffix, as the README names it).
_MULTIHOP_TYPE_NAMES = {"inference_query": "inference", "comparison_query": "comparison",
                        "temporal_query": "temporal", **{t: t for t in MULTIHOP_TYPES}}


@dataclass(frozen=True)
class ClariqFacet:
    """One hidden information need behind a ClariQ request.

    Attributes:
        facet_id: ``"F0010"``-style id.
        description: What the user with this facet really wants (``facet_desc``).
        answers: Question id -> the user's answer under this facet. Where the file answers
            the same question twice for a facet (22 rows), the first answer is kept.
    """

    facet_id: str
    description: str
    answers: dict[str, str]


@dataclass(frozen=True)
class ClariqTopic:
    """A ClariQ request with its facets and annotated clarifying questions.

    Attributes:
        topic_id: The TREC Web Track topic number as text.
        request: The user's initial request.
        description: The topic description (``topic_desc``, as in the file).
        need: Clarification need from 1 (none) to 4 (hopelessly ambiguous).
        facets: The facets in file order.
        questions: Question id -> text for every question annotated for the topic
            (:data:`NO_QUESTION` excluded).
    """

    topic_id: str
    request: str
    description: str
    need: int
    facets: tuple[ClariqFacet, ...]
    questions: dict[str, str]


@dataclass(frozen=True)
class InteractTask:
    """One InteractComp task.

    Attributes:
        id: The task id as text (never compared as an int, unlike the upstream harness).
        domain: Topic area, e.g. ``"Humanities"``.
        question: The ambiguous question the agent sees.
        answer: The gold answer (the target entity).
        context: Hidden facts; only the simulated user may see them.
    """

    id: str
    domain: str
    question: str
    answer: str
    context: str


@dataclass(frozen=True)
class Evidence:
    """A fact from one corpus article that a MultiHop-RAG answer needs."""

    url: str
    title: str
    fact: str
    published_at: str


@dataclass(frozen=True)
class MultihopQuery:
    """A MultiHop-RAG query with its evidence.

    Attributes:
        id: ``str(query_index)``, the position in the full list of 2,556.
        query: The question.
        answer: The gold answer (``"Insufficient information."`` for null queries).
        question_type: ``inference``, ``comparison``, ``temporal`` or ``null_query`` (the
            file's ``inference_query`` etc., shortened).
        evidence: The evidence facts in file order (empty for null queries).
    """

    id: str
    query: str
    answer: str
    question_type: str
    evidence: tuple[Evidence, ...]


def _tsv_rows(path: Path, header: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` of a CSV-quoted TSV file after checking its header."""
    if not path.is_file():
        raise FormatError(path, None, "file not found; expected the ClariQ TSV files "
                          "(train.tsv, dev.tsv, question_bank.tsv) in this folder")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        first = next(reader, None)
        if first is None or tuple(first) != header:
            raise FormatError(path, 1, f"header {first!r} does not match the expected columns "
                              f"{', '.join(header)}")
        for row in reader:
            if not any(row):
                continue
            if len(row) != len(header):
                raise FormatError(path, reader.line_num, f"expected {len(header)} tab-separated "
                                  f"fields, found {len(row)}")
            yield reader.line_num, row


def load_question_bank(root: Path) -> dict[str, str]:
    """ClariQ's question bank: question id -> text (``Q00001`` -> ``""``).

    Args:
        root: The ClariQ folder holding ``question_bank.tsv``.

    Raises:
        FormatError: A missing file, a wrong header or field count, or a repeated id.
    """
    path = Path(root) / "question_bank.tsv"
    bank: dict[str, str] = {}
    for line, (qid, text) in _tsv_rows(path, ("question_id", "question")):
        if not qid or qid in bank:
            raise FormatError(path, line, f"empty or repeated question id {qid!r}")
        bank[qid] = text
    return bank


def load_clariq(root: Path, split: str) -> list[ClariqTopic]:
    """The topics of a ClariQ split, in order of first appearance in the file.

    Args:
        root: The ClariQ folder.
        split: ``"train"`` or ``"dev"``.

    Raises:
        ValueError: An unknown split.
        FormatError: A malformed row, a label outside 1..4, or a topic, facet or question
            whose fields disagree between rows.
    """
    if split not in ("train", "dev"):
        raise ValueError(f"unknown ClariQ split {split!r}; use 'train' or 'dev' "
                         "(the test split is held out)")
    path = Path(root) / f"{split}.tsv"
    heads: dict[str, tuple[str, str, int]] = {}
    facets: dict[str, dict[str, tuple[str, dict[str, str]]]] = {}
    questions: dict[str, dict[str, str]] = {}
    seen_q: dict[str, str] = {}
    owner: dict[str, str] = {}
    for line, row in _tsv_rows(path, CLARIQ_COLUMNS):
        tid, request, desc, need_s, fid, fdesc, qid, qtext, answer = row
        if need_s not in ("1", "2", "3", "4"):
            raise FormatError(path, line, f"clarification_need {need_s!r} is not one of 1, 2, "
                              "3, 4")
        head = (request, desc, int(need_s))
        if heads.setdefault(tid, head) != head:
            raise FormatError(path, line, f"topic {tid} has a different request, description "
                              "or clarification_need than on its first row")
        if owner.setdefault(fid, tid) != tid:
            raise FormatError(path, line, f"facet {fid} appears under topics {owner[fid]} "
                              f"and {tid}; a facet belongs to one topic")
        fdesc_first, answers = facets.setdefault(tid, {}).setdefault(fid, (fdesc, {}))
        if fdesc_first != fdesc:
            raise FormatError(path, line, f"facet {fid} has a different facet_desc than on "
                              "its first row")
        if seen_q.setdefault(qid, qtext) != qtext:
            raise FormatError(path, line, f"question {qid} has a different text than on "
                              "an earlier row")
        answers.setdefault(qid, answer)
        if qid != NO_QUESTION:
            questions.setdefault(tid, {})[qid] = qtext
    return [
        ClariqTopic(
            topic_id=tid, request=request, description=desc, need=need,
            facets=tuple(ClariqFacet(fid, fdesc, answers)
                         for fid, (fdesc, answers) in facets[tid].items()),
            questions=questions.get(tid, {}),
        )
        for tid, (request, desc, need) in heads.items()
    ]


def _decrypt(field: str, key: bytes) -> str:
    raw = base64.b64decode(field, validate=True)
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(raw)).decode("utf-8")


def load_interactcomp(root: Path) -> list[InteractTask]:
    """The InteractComp dev tasks, decrypted in memory (plaintext is never written).

    Each field is base64, XOR-ed with the SHA-256 digest of the record's ``canary``.

    Args:
        root: The InteractComp folder holding ``InteractComp210.dev.encrypted.jsonl``.

    Raises:
        FormatError: A missing field, a repeated id, or a field that does not decrypt.
    """
    path = Path(root) / INTERACTCOMP_FILE
    tasks: list[InteractTask] = []
    seen: set[str] = set()
    for line, obj in iter_jsonl(path):
        missing = [k for k in ("id", "domain", "question", "answer", "context", "canary")
                   if k not in obj]
        if missing:
            raise FormatError(path, line, f"missing field(s) {', '.join(missing)}")
        raw_id = obj["id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
            raise FormatError(path, line, f"id {raw_id!r} is not an integer or string")
        tid = str(raw_id)
        if tid in seen:
            raise FormatError(path, line, f"duplicate task id {tid}")
        seen.add(tid)
        key = hashlib.sha256(str(obj["canary"]).encode("utf-8")).digest()
        plain: dict[str, str] = {}
        for name in ("domain", "question", "answer", "context"):
            try:
                plain[name] = _decrypt(str(obj[name]), key)
            except (binascii.Error, UnicodeDecodeError) as e:
                raise FormatError(path, line, f'field "{name}" does not decrypt ({e}); expected '
                                  "base64 XOR-ed with sha256(canary), as released") from e
        tasks.append(InteractTask(id=tid, **plain))
    return tasks


def _text(obj: dict[str, Any], key: str, path: Path, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise FormatError(path, None, f'{where}: field "{key}" is {type(value).__name__}; '
                          "expected a string")
    return value


def load_multihop_queries(root: Path) -> list[MultihopQuery]:
    """The MultiHop-RAG dev queries (``queries.dev.json``) in file order.

    Args:
        root: The MultiHop-RAG folder.

    Raises:
        FormatError: Bad JSON, a missing or mistyped field, an unknown question type or a
            repeated ``query_index``. JSON lists have no useful line numbers, so the message
            names the record by its position instead.
    """
    path = Path(root) / "queries.dev.json"
    if not path.is_file():
        raise FormatError(path, None, "file not found; expected the MultiHop-RAG dev queries")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(path, e.lineno, f"invalid JSON ({e.msg})") from e
    if not isinstance(records, list):
        raise FormatError(path, None, "expected a JSON list of query records")
    out: list[MultihopQuery] = []
    seen: set[str] = set()
    for n, obj in enumerate(records):
        where = f"record {n}"
        if not isinstance(obj, dict):
            raise FormatError(path, None, f"{where} is not a JSON object")
        index = obj.get("query_index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise FormatError(path, None, f'{where}: field "query_index" must be an integer')
        qid = str(index)
        if qid in seen:
            raise FormatError(path, None, f"{where}: duplicate query_index {qid}")
        seen.add(qid)
        raw_type = _text(obj, "question_type", path, where)
        qtype = _MULTIHOP_TYPE_NAMES.get(raw_type)
        if qtype is None:
            raise FormatError(path, None, f"{where}: unknown question_type {raw_type!r}; "
                              f"expected one of {', '.join(_MULTIHOP_TYPE_NAMES)}")
        items = obj.get("evidence_list")
        if not isinstance(items, list):
            raise FormatError(path, None, f'{where}: field "evidence_list" must be a list')
        evidence = []
        for m, ev in enumerate(items):
            ewhere = f"{where}, evidence {m}"
            if not isinstance(ev, dict):
                raise FormatError(path, None, f"{ewhere} is not a JSON object")
            evidence.append(Evidence(*(_text(ev, k, path, ewhere)
                                       for k in ("url", "title", "fact", "published_at"))))
        out.append(MultihopQuery(qid, _text(obj, "query", path, where),
                                 _text(obj, "answer", path, where), qtype, tuple(evidence)))
    return out
