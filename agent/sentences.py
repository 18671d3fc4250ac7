"""Sentences and ``[n]`` citations of model-written text: the primitives that citation
checking (:mod:`pursuit.agent.citations`) and gap detection (:mod:`pursuit.agent.coverage`)
both read answers with."""

from __future__ import annotations

import re

__all__ = ["CITATION", "cited_numbers", "split_sentences", "uncited"]

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


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer; a citation right after a full stop stays with its sentence."""
    text = re.sub(r"([.!?])\s*((?:\[\d+(?:\s*,\s*\d+)*\]\s*)+)",
                  lambda m: f" {m.group(2).strip()}{m.group(1)} ", text)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def uncited(sentence: str) -> str:
    """``sentence``'s own words: citations removed, white space collapsed, closing
    punctuation dropped ("The city is [1]." → "The city is")."""
    return " ".join(CITATION.sub(" ", sentence).split()).rstrip(".!?:;, ")
