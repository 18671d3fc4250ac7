"""Filling a citation that stands where the answer belongs.

Small models often answer "The term for them is [1]." when passage 1 names the term: the
sentence points at the passage instead of saying what it states. Asking the same model
again in the same conversation tends to repeat the same sentence (measured in
BENCHMARKS.md), so the searcher asks a narrower question instead: show the cited passage
alone and ask for its exact words that answer the sub-question. The reply is kept only
when those words occur in what it was shown of the passage — title, publication day and
text (:func:`shown_parts`, :func:`grounded_span`) — so the filled sentence quotes the
document rather than the model's memory; otherwise the sentence stays as it
was, and the sub-answer counts as a gap (:mod:`pursuit.agent.coverage`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from pursuit.agent.llm.contract import LLMClient
from pursuit.agent.prompts import extract_prompt, published_day
from pursuit.agent.sentences import CITATION, cited_numbers, split_sentences, uncited

__all__ = ["MAX_SPAN_WORDS", "fill_bare_citation", "grounded_span", "shown_parts"]

#: Longest reply taken as an answer span; a longer one is a sentence, not the words asked for.
MAX_SPAN_WORDS = 12
_QUOTES = "\"'“”‘’`*"


def _normal(text: str) -> str:
    """Case-folded, NFKC, curly quotes straightened, runs of white space made one space."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    return " ".join(text.split())


def grounded_span(reply: str, passage_text: str, max_words: int = MAX_SPAN_WORDS) -> str | None:
    """The answer words in ``reply`` when the passage contains them verbatim, else ``None``.

    The reply's first line is taken without surrounding quotes, a trailing full stop or a
    citation; "NONE", an empty reply, one of more than ``max_words`` words, and
    words the passage does not contain as whole words (case and spacing aside) are
    refused: a letter "D" is not grounded by the "d" inside "Michigan Stadium".

    Example:
        >>> grounded_span('"Sportsbooks".', "Sportsbooks may move their lines.")
        'Sportsbooks'
        >>> grounded_span("Bookmakers", "Sportsbooks may move their lines.") is None
        True
    """
    lines = reply.strip().splitlines()
    span = CITATION.sub("", lines[0] if lines else "").strip().strip(_QUOTES).strip()
    span = span.rstrip(".").strip().strip(_QUOTES).strip()
    words = span.split()
    if not words or len(words) > max_words or span.casefold().rstrip(".") == "none":
        return None
    found = re.search(rf"(?<!\w){re.escape(_normal(span))}(?!\w)", _normal(passage_text))
    return " ".join(words) if found else None


def shown_parts(passage: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    """What the extractor is shown of a passage — title, publication day (also accepted as
    ``YYYY-MM-DD``), text — each on its own with the most words a span from it may have, so
    a span is grounded in exactly what the model read ("the article that ... is [1]" is
    answered by the title, "the date of the report" by the day) and never straddles two of
    them. A title is a name and may be quoted whole however long it is; spans of the day
    and the text keep :data:`MAX_SPAN_WORDS`."""
    title = str(passage.get("title") or "")
    day = published_day(passage)
    iso = str(passage.get("published_at") or "")[:10] if day else ""  # the same day, ISO
    parts = ((title, max(MAX_SPAN_WORDS, len(title.split()))), (day, MAX_SPAN_WORDS),
             (iso, MAX_SPAN_WORDS), (str(passage["text"]), MAX_SPAN_WORDS))
    return tuple((part, cap) for part, cap in parts if part)


def fill_bare_citation(llm: LLMClient, question: str, text: str,
                       passages: Sequence[Mapping[str, Any]], *,
                       max_tokens: int = 48) -> tuple[str, int]:
    """``(text, tokens)``: ``text`` with its bare first sentence spelled out.

    ``text``'s first sentence cites passage ``n`` where its answer belongs; the model is
    shown passage ``n`` alone and asked for the words that answer ``question``. When they
    are grounded (:func:`grounded_span`), the first sentence becomes its own words up to
    the citation, then the span and ``[n]`` ("The term for them is Sportsbooks [1].");
    the sentences after it are kept. Otherwise ``text`` is returned unchanged.
    """
    sentences = split_sentences(text)
    by_n = {int(p["n"]): p for p in passages}
    cited = [n for n in cited_numbers(sentences[0]) if n in by_n] if sentences else []
    if not cited:
        return text, 0
    n = cited[0]
    reply = llm.complete(extract_prompt(question, by_n[n]), max_tokens=max_tokens)
    tokens = reply.prompt_tokens + reply.completion_tokens
    span = next((found for part, cap in shown_parts(by_n[n])
                 if (found := grounded_span(reply.text, part, cap)) is not None), None)
    if span is None:
        return text, tokens
    lead = uncited(sentences[0])
    filled = f"{lead} {span} [{n}]." if lead else f"{span} [{n}]."
    return " ".join([filled, *sentences[1:]]), tokens
