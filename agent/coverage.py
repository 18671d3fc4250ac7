"""Which sub-questions the documents answered.

A searcher whose passages do not answer its sub-question says so ("The documents do not
say when ..."); the answerer's prompt asks for exactly that. Such a sub-answer is a *gap*:
synthesis does not build on it (its hedged asides would invite the model to fill the hole
with a neighbouring fact), the final answer opens by saying the documents do not say
everything the question needs (:data:`PARTLY_FOUND`, written by the code, not left to the
model) and lists the gaps, and when every sub-question is a gap the agent answers that
the documents do not say without asking the model to write anything.

A sub-answer is a gap when its first sentence abstains (:func:`abstains`) or puts a
citation where the answer belongs ("The city is [1].", :func:`states_nothing`: small
models do this when a passage is on topic but they cannot find the answer in it); a
later "the documents do not say whether ..." after a cited finding is a caveat, not a gap.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from pursuit.agent.sentences import split_sentences, uncited

__all__ = ["ABSTENTIONS", "NOTHING_FOUND", "PARTLY_FOUND", "abstains", "first_sentence",
           "is_gap", "split_gaps", "states_nothing"]

#: The whole answer when no sub-question found an answer.
NOTHING_FOUND = "The documents do not say: no passage found answers this question."
#: The answer's first sentence when some sub-question found none: the plan's sub-questions
#: are what the question needs, so an answer without one of them is not the documents' answer.
PARTLY_FOUND = "The documents do not say everything this question needs."

#: Word runs that say the documents do not answer (after :func:`_words`: case-folded,
#: punctuation-free, "n't" spelled " not").
ABSTENTIONS = (
    "insufficient information", "not enough information", "no information",
    "do not say", "does not say", "do not state", "does not state",
    "do not mention", "does not mention", "not mentioned", "no mention",
    "do not provide", "does not provide", "not provided", "do not specify",
    "does not specify", "not specified", "do not contain", "does not contain",
    "could not find", "can not be determined", "not possible to determine",
)
_COPULA_END = re.compile(r"\b(?:is|are|was|were|be|been)$", re.IGNORECASE)


def _words(text: str) -> str:
    """``text`` as space-separated lower-case words, padded with spaces."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    text = re.sub(r"n't\b", " not", text.replace("cannot", "can not"))
    return f" {' '.join(re.findall(r'[a-z0-9]+', text))} "


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (all of it when it has one sentence), split as the
    answer's sentences are (:func:`~pursuit.agent.sentences.split_sentences`)."""
    sentences = split_sentences(text)
    return sentences[0] if sentences else ""


def abstains(text: str) -> bool:
    """Whether ``text`` opens by saying the documents do not answer.

    Example:
        >>> abstains("The documents don't say who founded it."), abstains("It opened in 1990 [1].")
        (True, False)
        >>> abstains("It opened in 1990 [1]. The passages do not say who founded it.")
        False
    """
    words = _words(first_sentence(text))
    return any(f" {phrase} " in words for phrase in ABSTENTIONS)


def states_nothing(text: str) -> bool:
    """Whether ``text`` opens with a sentence that points at a passage instead of saying
    the answer ("The city where it is based is [1].": a citation in the answer's place).

    Example:
        >>> states_nothing("The term for them is [1]."), states_nothing("It is Tokyo [1].")
        (True, False)
    """
    bare = uncited(first_sentence(text))
    return not bare or bool(_COPULA_END.search(bare))


def is_gap(answer: str) -> bool:
    """Whether a sub-answer leaves its sub-question open: it abstains or states nothing."""
    return abstains(answer) or states_nothing(answer)


def split_gaps(answers: Sequence[Mapping[str, Any]]
               ) -> tuple[list[Mapping[str, Any]], list[str]]:
    """``(answered, gaps)``: the sub-answers that answer, and the questions of those that
    leave theirs open (:func:`is_gap`), both in the given order."""
    answered: list[Mapping[str, Any]] = []
    gaps: list[str] = []
    for a in answers:
        if is_gap(str(a["answer"])):
            gaps.append(str(a["question"]))
        else:
            answered.append(a)
    return answered, gaps
