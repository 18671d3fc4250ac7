"""InteractComp harness pieces: a simulated user that answers yes/no, and an answer grader.

The simulated user is a chat model that sees the task's hidden ``context`` and one
clarifying question, nothing else; the agent only ever gets back ``"yes"``, ``"no"`` or
``"unknown"``, so no wording of the model's reply (which may quote the context) leaks
into the agent's view. Two flaws of the upstream harness are avoided on purpose
(docs/methods.md §8): replies are parsed by their first word, never by substring ("know"
contains "no"), and answers are graded by a separate judge model after a cheap
normalised exact match.

Example:
    >>> from pursuit.agent.llm.contract import ScriptedLLM
    >>> SimulatedUser(ScriptedLLM(["Yes."]), "The club plays in red and white.").answer(
    ...     "Does the club play in red?")
    'yes'
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from pursuit.agent.llm.contract import LLMClient, system, user

__all__ = ["Reply", "SimulatedUser", "exact_match", "grade_answer", "normalise_answer",
           "parse_yes_no"]

Reply = Literal["yes", "no", "unknown"]

_EDGE = string.punctuation + "“”‘’«»…–—" + string.whitespace
# Word sequences (after normalising apostrophes) that mean "I don't know".
_DONT_KNOW = (("i", "don't", "know"), ("i", "dont", "know"), ("i", "do", "not", "know"),
              ("don't", "know"), ("dont", "know"), ("unknown",), ("idk",))

USER_SYSTEM = (
    "You play a person who asked a search assistant an ambiguous question. You know only "
    "the facts below. The assistant asks you a clarifying question. Answer it from the facts: "
    "reply with exactly one of: yes, no, I don't know. Say I don't know when the facts do not "
    "settle it. Write nothing else."
)
JUDGE_SYSTEM = (
    "You grade answers. Decide whether the predicted answer names the same entity as the gold "
    "answer (other wording, abbreviations and extra detail are fine; a different entity is "
    "not). Reply with exactly one word: correct or incorrect."
)


def _words(text: str) -> list[str]:
    """Lower-cased whitespace-separated words with punctuation stripped from their ends."""
    text = text.replace("’", "'").replace("‘", "'").casefold()
    return [w for w in (w.strip(_EDGE) for w in text.split()) if w]


def _parse(text: str) -> Reply | None:
    """The reply's meaning, or ``None`` when it is none of yes / no / don't know."""
    words = _words(text)
    if not words:
        return None
    if words[0] == "yes":
        return "yes"
    if words[0] == "no":
        # "No idea" is a don't-know, not a no.
        return "unknown" if words[1:2] == ["idea"] else "no"
    if any(tuple(words[: len(p)]) == p for p in _DONT_KNOW):
        return "unknown"
    return None


def parse_yes_no(text: str) -> Reply:
    """Map a simulated user's reply to ``"yes"``, ``"no"`` or ``"unknown"``, strictly.

    Only the first word counts, after stripping punctuation and case: ``"Yes."``,
    ``"**No**, it is not"`` and ``"I don't know"`` map; ``"know"``, ``"nothing"``,
    ``"noted"``, ``"yesterday"``, ``"Yeah"`` and ``"no idea"`` are ``"unknown"``.

    Example:
        >>> parse_yes_no("No, it was founded later."), parse_yes_no("Nothing says so.")
        ('no', 'unknown')
    """
    return _parse(text) or "unknown"


@dataclass
class SimulatedUser:
    """A user simulated by a chat model that knows only a task's hidden context.

    Args:
        llm: The model playing the user (any :class:`LLMClient`).
        context: The hidden facts; they go into the user model's prompt only.

    Attributes:
        log: ``(question, raw reply, parsed reply)`` for every question asked, for audits.
        unparsed: How many replies were none of yes / no / don't know (counted as unknown).
    """

    llm: LLMClient
    context: str
    log: list[tuple[str, str, Reply]] = field(default_factory=list)
    unparsed: int = 0

    def answer(self, question: str) -> Reply:
        """The user's answer to one clarifying question.

        Raises:
            LLMError: The user model failed (a harness should count it, not guess).
        """
        messages = [system(USER_SYSTEM),
                    user(f"Facts:\n{self.context}\n\nClarifying question: {question}\n\n"
                         "Reply with exactly one of: yes, no, I don't know.")]
        raw = self.llm.complete(messages, max_tokens=8, temperature=0.0).text
        parsed = _parse(raw)
        if parsed is None:
            self.unparsed += 1
        reply: Reply = parsed or "unknown"
        self.log.append((question, raw, reply))
        return reply


def normalise_answer(text: str) -> str:
    """Case-folded, accent-free words without punctuation or articles: the form in which
    answers are compared."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def exact_match(gold: str, predicted: str) -> bool:
    """Whether two answers are equal after case folding, accent, punctuation and article removal.

    Example:
        >>> exact_match("The Beatles", "beatles."), exact_match("Il-96", "Il 96")
        (True, True)
    """
    g = normalise_answer(gold)
    return bool(g) and g == normalise_answer(predicted)


def names_answer(gold: str, predicted: str) -> bool:
    """Whether the normalised gold answer occurs as a whole run of words in the prediction.

    A lenient, judge-free grade: it accepts "It is the Ilyushin Il-96." for "Il-96", and
    also a longer name that merely contains the gold ("Ajax Amsterdam" for "Ajax"), so it
    is an upper bound on exact match, not a verdict.

    Example:
        >>> names_answer("Il-96", "It is the Ilyushin Il-96."), names_answer("Ajax", "Ajaxx")
        (True, False)
    """
    g = normalise_answer(gold)
    return bool(g) and f" {g} " in f" {normalise_answer(predicted)} "


def grade_answer(judge: LLMClient, question: str, gold: str, predicted: str) -> bool:
    """Whether ``predicted`` names the same entity as ``gold``.

    A normalised exact match is accepted without asking the judge; an empty prediction is
    wrong without asking. Otherwise the judge model (use a different model than the agent)
    replies ``correct`` or ``incorrect`` (``yes`` / ``no`` also accepted, by first word);
    any other reply counts as incorrect, so a confused judge never inflates accuracy.

    Raises:
        LLMError: The judge model failed.
    """
    if exact_match(gold, predicted):
        return True
    if not normalise_answer(predicted):
        return False
    messages = [system(JUDGE_SYSTEM),
                user(f"Question: {question}\nGold answer: {gold}\nPredicted answer: {predicted}"
                     "\n\nIs the predicted answer correct or incorrect?")]
    words = _words(judge.complete(messages, max_tokens=8, temperature=0.0).text)
    return bool(words) and words[0] in ("correct", "yes")

