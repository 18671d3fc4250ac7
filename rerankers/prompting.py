"""Prompts built from named segments, with exact token spans per segment.

Attention rerankers need to know which tokens belong to which document. Tokenising the
pieces one by one gives the wrong answer: Qwen's tokenizer merges a document's final
punctuation with the blank line after it (``".\\n\\n"`` is one token), so the tokens of a
whole prompt are not the concatenation of the tokens of its parts. Here the whole prompt is
tokenised once with character offsets and every token goes to the segment its first
character belongs to.

Truncation shortens documents only; the instruction and the query are never cut.

Example:
    >>> prompt = tokenise_segments(tokenizer, [("head", "Docs:\\n"), ("d0", "[1] Tides.")])  # doctest: +SKIP
    >>> prompt.spans["d0"]  # doctest: +SKIP
    (3, 7)
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["INSTRUCTIONS", "ICRPrompt", "TokenisedPrompt", "build_icr_prompt",
           "tokenise_segments", "truncate_tokens", "truncate_words"]

#: The ICR instructions (Chen et al., 2025): one for retrieval sets, one for QA sets.
INSTRUCTIONS = {
    "retrieval": "Please find information that is relevant to the following query in the "
                 "paragraphs above.",
    "qa": "Please answer the following question based on the information in the paragraphs "
          "above.",
}
_WORD = re.compile(r"\S+")


def truncate_words(text: str, max_words: int | None) -> str:
    """The first ``max_words`` whitespace-separated words of ``text``, spacing kept.

    Args:
        text: A document's text.
        max_words: Word budget; ``None`` keeps the text whole.

    Example:
        >>> truncate_words("a  b c d", 2)
        'a  b'
    """
    if max_words is None:
        return text
    if max_words < 0:
        raise ValueError(f"max_words must be >= 0, got {max_words}")
    if max_words == 0:
        return ""
    for i, match in enumerate(_WORD.finditer(text), start=1):
        if i == max_words:
            return text[: match.end()]
    return text


def truncate_tokens(tokenizer: Any, text: str, max_tokens: int | None) -> str:
    """The longest prefix of ``text`` that is its first ``max_tokens`` tokens.

    Cuts at the character where token ``max_tokens`` starts (offsets of the text tokenised
    alone), so no token is split.

    Args:
        tokenizer: A fast tokenizer (one that returns offsets).
        text: A document's text.
        max_tokens: Token budget; ``None`` keeps the text whole.
    """
    if max_tokens is None:
        return text
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if len(offsets) <= max_tokens:
        return text
    return text[: offsets[max_tokens][0]]


@dataclass(frozen=True)
class TokenisedPrompt:
    """A prompt tokenised once, with the token span of every named segment.

    Attributes:
        text: The whole prompt.
        input_ids: Its token ids.
        offsets: ``(start, end)`` character offsets of every token.
        spans: Segment name -> ``(first token, end token)``, end exclusive. A segment whose
            characters all fall inside a token that starts earlier gets an empty span.
        char_spans: Segment name -> ``(first char, end char)`` in :attr:`text`.
    """

    text: str
    input_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    spans: dict[str, tuple[int, int]]
    char_spans: dict[str, tuple[int, int]]

    def span_text(self, name: str) -> str:
        """The prompt text covered by the tokens of segment ``name``."""
        start, end = self.spans[name]
        if start == end:
            return ""
        return self.text[self.offsets[start][0]: self.offsets[end - 1][1]]


def tokenise_segments(tokenizer: Any, segments: Sequence[tuple[str, str]]) -> TokenisedPrompt:
    """Concatenate named segments, tokenise once, and find every segment's token span.

    Args:
        tokenizer: A fast tokenizer (``return_offsets_mapping`` must work).
        segments: ``(name, text)`` pairs in prompt order; names must be unique.

    Raises:
        ValueError: duplicate segment names.
    """
    names = [name for name, _ in segments]
    if len(set(names)) != len(names):
        raise ValueError(f"segment names must be unique, got {names}")
    starts, char_spans, pos = [], {}, 0
    for name, piece in segments:
        starts.append(pos)
        char_spans[name] = (pos, pos + len(piece))
        pos += len(piece)
    text = "".join(piece for _, piece in segments)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = tuple(int(i) for i in enc["input_ids"])
    offsets = tuple((int(a), int(b)) for a, b in enc["offset_mapping"])
    # Segment index of each token = the last segment starting at or before its first char.
    # Empty segments share a start with the next one; bisect_right picks the later, and an
    # empty segment has no characters to own.
    owner = [bisect.bisect_right(starts, a) - 1 for a, _ in offsets]
    spans = {}
    for index, name in enumerate(names):
        first = bisect.bisect_left(owner, index)
        spans[name] = (first, bisect.bisect_right(owner, index, lo=first))
    return TokenisedPrompt(text, ids, offsets, spans, char_spans)


@dataclass(frozen=True)
class ICRPrompt:
    """An ICR prompt: documents first, then the query span.

    Attributes:
        prompt: The tokenised prompt.
        doc_spans: Token span of every document, in prompt order.
        query_start: First token of the query span (instruction, query and chat suffix);
            every token before it is the documents prefix.
    """

    prompt: TokenisedPrompt
    doc_spans: tuple[tuple[int, int], ...]
    query_start: int

    @property
    def prefix_ids(self) -> tuple[int, ...]:
        """Token ids of the documents prefix (shared by every query)."""
        return self.prompt.input_ids[: self.query_start]

    @property
    def query_ids(self) -> tuple[int, ...]:
        """Token ids of the query span."""
        return self.prompt.input_ids[self.query_start:]


def build_icr_prompt(tokenizer: Any, docs: Sequence[str], query: str, *,
                     instruction: str = INSTRUCTIONS["retrieval"],
                     chat: tuple[str, str] = ("", "")) -> ICRPrompt:
    """The ICR prompt: chat prefix, documents, instruction, ``Query: {q}``, chat suffix.

    Documents appear as ``[i] {text}`` (``i`` from 1, in the given order) separated by a
    blank line; pass them already truncated (:func:`truncate_words`). The query span starts
    on a new line, so its first token never straddles the last document.

    Args:
        tokenizer: A fast tokenizer.
        docs: Document texts (``Doc.contents()``: title, newline, text), in prompt order.
        query: The query text (never truncated).
        instruction: The task instruction (see :data:`INSTRUCTIONS`).
        chat: The chat template's text before and after the user content.

    Raises:
        ValueError: the tokenizer joined the last separator and the instruction into one
            token, so the documents prefix would depend on the query.
    """
    segments = [("head", chat[0] + "Here are some paragraphs:\n\n")]
    for i, doc in enumerate(docs):
        segments.append((f"doc{i}", f"[{i + 1}] {doc}"))
        segments.append((f"sep{i}", "\n\n"))
    segments.append(("query", f"{instruction}\n\nQuery: {query}{chat[1]}"))
    prompt = tokenise_segments(tokenizer, segments)
    start, _ = prompt.spans["query"]
    if start < len(prompt.offsets) and prompt.offsets[start][0] != prompt.char_spans["query"][0]:
        raise ValueError("the tokenizer merged the text before the instruction into its first "
                         "token; start the instruction with a letter after a blank line")
    doc_spans = tuple(prompt.spans[f"doc{i}"] for i in range(len(docs)))
    return ICRPrompt(prompt, doc_spans, start)
