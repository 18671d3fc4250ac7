"""Citations: local [n] numbers, renumbered into one list, checked against the store.

Each sub-answer cites its own passages ``[1]..[n]``. :func:`renumber` gives every cited
document one global number (first citation first) and rewrites the sub-answers with them.
After the model writes the answer, :func:`checked_answer` keeps only citations that point
at a known source whose document still exists in the store, renumbers them 1..m in order
of appearance, and marks each sentence as sourced or not, so a sentence without support is
never shown as if it had a source. A sentence the model left uncited gets a citation only
when one passage visibly restates it (:func:`attribute`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import Stemmer

from pursuit.agent.coverage import abstains
from pursuit.agent.sentences import cited_numbers, split_sentences
from pursuit.indexes.docstore import DocStore

__all__ = ["attribute", "attribute_uncited", "checked_answer", "cited_numbers", "content_words",
           "keep_citations", "renumber", "split_sentences"]

_CITE_SPACED = re.compile(r"(\s*)\[(\d+(?:\s*,\s*\d+)*)\]")


def keep_citations(text: str, valid: set[int]) -> str:
    """``text`` without citations to numbers outside ``valid`` (an emptied bracket vanishes
    with the space before it)."""
    return _rewrite(text, {n: n for n in valid})


#: Words too common to count as support.
_STOP = frozenset(["a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "has", "have", "how", "in", "is", "it", "its", "of", "on", "or", "that", "the", "their", "them", "there", "these", "this", "to", "was", "were", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your", "not", "but", "also", "than", "then", "they", "into", "about", "more", "most"])
_WORD = re.compile(r"\w+")


_STEMMER = Stemmer.Stemmer("english")


def content_words(text: str) -> set[str]:
    """Stems of the lower-cased words of three or more characters that are not stop words."""
    words = [w for w in _WORD.findall(text.casefold()) if len(w) > 2 and w not in _STOP]
    return set(_STEMMER.stemWords(words))


def attribute(sentence: str, passages: Sequence[Mapping[str, Any]], *,
              min_overlap: float = 0.6, min_words: int = 3) -> int | None:
    """The passage number that lexically supports an uncited ``sentence``, if one does.

    Support means at least ``min_words`` of the sentence's content words, and at least
    ``min_overlap`` of them, occur in the passage (title included). Small models often
    answer from a passage without writing ``[n]``; this credits the passage only when the
    sentence visibly restates it, and leaves every other sentence unsourced.
    """
    words = content_words(sentence)
    if len(words) < min_words:
        return None
    best, best_share = None, 0.0
    for p in passages:
        found = words & content_words(f"{p.get('title', '')} {p['text']}")
        share = len(found) / len(words)
        if len(found) >= min_words and share >= min_overlap and share > best_share:
            best, best_share = int(p["n"]), share
    return best


def attribute_uncited(text: str, passages: Sequence[Mapping[str, Any]]) -> str:
    """``text`` with ``[n]`` added to each uncited sentence a passage supports
    (:func:`attribute`); a sentence saying the documents do not answer is no claim and gets
    none, however many of the passage's words it repeats."""
    out = []
    for sentence in split_sentences(text):
        if not cited_numbers(sentence) and not abstains(sentence):
            n = attribute(sentence, passages)
            if n is not None:
                end = len(sentence.rstrip(".!?"))
                sentence = f"{sentence[:end]} [{n}]{sentence[end:]}"
        out.append(sentence)
    return " ".join(out)


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


def checked_answer(text: str, sources: Sequence[Mapping[str, Any]],
                   store: DocStore | None) -> dict[str, Any]:
    """The answer as shown: verified citations renumbered 1..m, sentences marked.

    A citation survives when its number is a known source and (given a ``store``) the
    source's document exists there.

    Returns:
        ``{"text", "sentences": [{"text", "citations": [n...], "abstains"}], "citations":
        [source...], "unsupported": number of sentences without a citation}``; a sentence
        that says the documents do not say something (``abstains``) claims nothing and
        counts as neither sourced nor unsupported.
    """
    known = {s["n"]: s for s in sources}
    if store is not None and known:
        present = store.get([s["doc_id"] for s in known.values()], missing="skip")
        known = {n: s for n, s in known.items() if s["doc_id"] in present}
    text = attribute_uncited(keep_citations(text, set(known)), list(known.values()))
    order = {old: new for new, old in enumerate(cited_numbers(text), start=1)}
    text = _rewrite(text, order)
    citations = [{**known[old], "n": new} for old, new in order.items()]
    sentences = [{"text": s, "citations": cited_numbers(s), "abstains": abstains(s)}
                 for s in split_sentences(text)]
    return {"text": text, "sentences": sentences, "citations": citations,
            "unsupported": sum(1 for s in sentences if not s["citations"] and not s["abstains"])}
