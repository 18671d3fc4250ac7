"""Citations: local [n] numbers, renumbered into one list, checked against the store.

Each sub-answer cites its own passages ``[1]..[n]``. :func:`renumber` gives every cited
document one global number (first citation first) and rewrites the sub-answers with them.
After the model writes the answer, :func:`checked_answer` keeps only citations that point
at a known source whose document still exists in the store, renumbers them 1..m in order
of appearance, and marks each sentence as sourced or not, so a sentence without support is
never shown as if it had a source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pursuit.indexes.docstore import DocStore

__all__ = ["checked_answer", "cited_numbers", "keep_citations", "renumber", "split_sentences"]

_CITE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_CITE_SPACED = re.compile(r"(\s*)\[(\d+(?:\s*,\s*\d+)*)\]")


def cited_numbers(text: str) -> list[int]:
    """Citation numbers in ``text`` in order of first appearance (``[2]``, ``[1, 3]``)."""
    seen: list[int] = []
    for group in _CITE.findall(text):
        for part in group.split(","):
            n = int(part)
            if n not in seen:
                seen.append(n)
    return seen


def keep_citations(text: str, valid: set[int]) -> str:
    """``text`` without citations to numbers outside ``valid`` (an emptied bracket vanishes
    with the space before it)."""
    return _rewrite(text, {n: n for n in valid})


def _rewrite(text: str, mapping: Mapping[int, int]) -> str:
    """Citations renumbered by ``mapping``; numbers it lacks are dropped."""
    def fix(match: re.Match[str]) -> str:
        nums = {mapping[int(p)] for p in match.group(2).split(",") if int(p) in mapping}
        return f"{match.group(1)}[{', '.join(map(str, sorted(nums)))}]" if nums else ""
    return _CITE_SPACED.sub(fix, text).strip()


def renumber(answers: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Global citation numbers over sub-answers given in plan order.

    Returns:
        ``(notes, sources)``: each note is "question: answer" with global numbers; sources
        are ``{"n", "doc_id", "title", "text", "published_at"}`` for every cited passage,
        one number per document (the first passage cited from it).
    """
    sources: list[dict[str, Any]] = []
    by_doc: dict[str, int] = {}
    notes = []
    for answer in answers:
        local = {p["n"]: p for p in answer["passages"]}
        mapping: dict[int, int] = {}
        for n in cited_numbers(answer["answer"]):
            passage = local.get(n)
            if passage is None:
                continue
            if passage["doc_id"] not in by_doc:
                by_doc[passage["doc_id"]] = len(sources) + 1
                sources.append({**passage, "n": len(sources) + 1})
            mapping[n] = by_doc[passage["doc_id"]]
        notes.append(f"{answer['question']}: {_rewrite(answer['answer'], mapping)}")
    return notes, sources


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer; a citation right after a full stop stays with its sentence."""
    text = re.sub(r"([.!?])\s*((?:\[\d+(?:\s*,\s*\d+)*\]\s*)+)", r"\2\1 ", text)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def checked_answer(text: str, sources: Sequence[Mapping[str, Any]],
                   store: DocStore | None) -> dict[str, Any]:
    """The answer as shown: verified citations renumbered 1..m, sentences marked.

    A citation survives when its number is a known source and (given a ``store``) the
    source's document exists there.

    Returns:
        ``{"text", "sentences": [{"text", "citations": [n...]}], "citations": [source...],
        "unsupported": number of sentences without a citation}``.
    """
    known = {s["n"]: s for s in sources}
    if store is not None and known:
        present = store.get([s["doc_id"] for s in known.values()], missing="skip")
        known = {n: s for n, s in known.items() if s["doc_id"] in present}
    text = keep_citations(text, set(known))
    order = {old: new for new, old in enumerate(cited_numbers(text), start=1)}
    text = _rewrite(text, order)
    citations = [{**known[old], "n": new} for old, new in order.items()]
    sentences = [{"text": s, "citations": cited_numbers(s)} for s in split_sentences(text)]
    return {"text": text, "sentences": sentences, "citations": citations,
            "unsupported": sum(1 for s in sentences if not s["citations"])}
