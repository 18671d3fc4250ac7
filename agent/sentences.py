"""Sentences and ``[n]`` citations of model-written text: the primitives that citation
checking (:mod:`pursuit.agent.citations`) and gap detection (:mod:`pursuit.agent.coverage`)
both read answers with."""

from __future__ import annotations

import re

__all__ = ["ABBREVIATIONS", "CITATION", "cited_numbers", "split_sentences", "uncited"]

#: One citation bracket, ``[2]`` or ``[1, 3]``; group 1 holds the numbers.
CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def cited_numbers(text: str) -> list[int]:
    """Citation numbers in ``text`` in order of first appearance (``[2]``, ``[1, 3]``)."""
    seen: list[int] = []
    for group in CITATION.findall(text):
        for part in group.split(","):
            n = int(part)
            if n not in seen:
                seen.append(n)
    return seen


#: Words whose full stop does not end a sentence ("David Benavidez vs. Demetrius Andrade").
ABBREVIATIONS = frozenset(["vs", "v", "mr", "mrs", "ms", "dr", "prof", "st", "mt", "jr", "sr",
                           "inc", "ltd", "co", "corp", "e.g", "i.e", "u.s", "u.k", "gen",
                           "gov", "sen", "rep", "approx"])


def _abbreviated(piece: str) -> bool:
    """Whether ``piece`` ends with an abbreviation's full stop rather than a sentence's."""
    words = piece.split()
    return bool(words) and words[-1].endswith(".") \
        and words[-1][:-1].lstrip("(\"'“‘").casefold() in ABBREVIATIONS


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer; a citation right after a full stop stays with its sentence,
    the full stop of an abbreviation (:data:`ABBREVIATIONS`) ends none, a line break
    always ends one.

    Example:
        >>> split_sentences("Benavidez vs. Andrade is on [1]. It sold out.")
        ['Benavidez vs. Andrade is on [1].', 'It sold out.']
    """
    text = re.sub(r"([.!?])\s*((?:\[\d+(?:\s*,\s*\d+)*\]\s*)+)",
                  lambda m: f" {m.group(2).strip()}{m.group(1)} ", text)
    sentences: list[str] = []
    for line in re.split(r"\n+", text):
        pieces: list[str] = []
        for piece in re.split(r"(?<=[.!?])\s+", line):
            if pieces and _abbreviated(pieces[-1]):
                pieces[-1] = f"{pieces[-1]} {piece}"
            else:
                pieces.append(piece)
        sentences.extend(pieces)
    return [s.strip() for s in sentences if s.strip()]


def uncited(sentence: str) -> str:
    """``sentence``'s own words: citations removed, white space collapsed, closing
    punctuation dropped ("The city is [1]." → "The city is")."""
    return " ".join(CITATION.sub(" ", sentence).split()).rstrip(".!?:;, ")
