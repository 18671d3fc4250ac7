"""A listwise generative reranker (RankGPT-style sliding window), kept as a baseline.

The LM reads a window of numbered passages and writes their order (``[2] > [1] > [3]``).
Windows slide from the bottom of the candidate list to the top, ``window`` documents at a
time, moving up by ``step`` (RankGPT: 20 and 10), so a relevant document near the bottom can
climb all the way to the top. Unlike RankGPT's loop, a list whose length is not a multiple
of the step still gets its top window (the last window is clamped at rank 0), and a list
shorter than the window is reordered in one window.

Generation is greedy with a token cap; whatever the model writes is read by
:func:`parse_permutation`, which never fails: unreadable output leaves the window's order
as it was. Scores are ``n - rank``, so they strictly decrease.

Example:
    >>> listwise = ListwiseReranker.from_options(index.store)  # doctest: +SKIP
    >>> (bm25 % 20 >> listwise % 10).search("what causes tides?")  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.records import Doc, Query
from pursuit.rerankers.base import Reranker, cached_lm, split_options
from pursuit.rerankers.prompting import truncate_tokens
from pursuit.retrievers.lm.causal import CausalLM

#: ``generate(query, passages) -> text``: the model's answer for one window.
Generate = Callable[[str, Sequence[str]], str]

SYSTEM = ("You are a search assistant that ranks passages by how relevant they are to a "
          "search query.")
#: Every option of the textual form and its default: the one source of the defaults, which
#: the constructor uses too. A stage's name shows the options its text gave.
DEFAULTS: dict[str, Any] = {"model": None, "dtype": "auto", "device": "auto", "window": 20,
                            "step": 10, "max_doc_tokens": 300, "max_new_tokens": None}


@dataclass
class WindowStats:
    """What the model did with the windows a :class:`ListwiseReranker` has shown it.

    Attributes:
        windows: Windows of two or more passages sent to the model.
        kept: Windows whose parsed order is the order they were given in (a small model
            often copies its input back; unreadable output also keeps the order).
        named_none: Windows whose output named no passage of the window at all.
    """

    windows: int = 0
    kept: int = 0
    named_none: int = 0


def _mentioned(text: str, n: int) -> list[int]:
    """0-based indices of the passages ``1..n`` that ``text`` names, first mention first."""
    seen: list[int] = []
    for token in re.findall(r"\d+", text):
        i = int(token) - 1
        if 0 <= i < n and i not in seen:
            seen.append(i)
    return seen


def named(text: str, n: int) -> int:
    """How many distinct passages ``1..n`` the model's output names.

    Example:
        >>> named("[2] > [2] > [7]", 3)
        1
    """
    return len(_mentioned(text, n))


def parse_permutation(text: str, n: int) -> list[int]:
    """Read a ranking of ``n`` passages from model output, as 0-based indices.

    Integers are taken in the order they appear; numbers outside ``1..n`` and repeats are
    dropped, and passages never mentioned follow in their original order. The result is
    always a permutation of ``range(n)``.

    Example:
        >>> parse_permutation("2 > [1] > [2] > 9, 3", 3)
        [1, 0, 2]
    """
    seen = _mentioned(text, n)
    return seen + [i for i in range(n) if i not in seen]


def windows(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` windows, bottom first, that a sliding pass over ``n`` items visits.

    Example:
        >>> windows(30, 20, 10)
        [(10, 30), (0, 20)]
    """
    if window < 2 or not 1 <= step <= window:
        raise ValueError(f"need window >= 2 and 1 <= step <= window, got window={window}, "
                         f"step={step}")
    out, end = [], n
    while end > 0:
        start = max(0, end - window)
        out.append((start, end))
        if start == 0:
            break
        end -= step
    return out


def build_prompt(query: str, passages: Sequence[str]) -> str:
    """The user message for one window: numbered passages, then the request for an order."""
    n = len(passages)
    listed = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1))
    example = " > ".join(f"[{i}]" for i in (2, 1, 3)[:n]) if n >= 2 else "[1]"
    return (f"Here are {n} passages, each marked with a number in brackets.\n\n{listed}\n\n"
            f"Search query: {query}\n\nRank all {n} passages from most to least relevant to "
            f"the search query. Answer with the numbers only, in the form {example} > ..., "
            "and nothing else.")


class ListwiseReranker(Reranker):
    """Rerank by the order an LM writes for sliding windows of candidates.

    Args:
        lm: The causal LM; ``None`` when ``generate`` is given.
        store: Where document text comes from when candidates carry none.
        window: Documents per prompt.
        step: How far the window moves up after each prompt.
        max_doc_tokens: Each passage is cut to this many tokens (RankGPT: 300).
        max_new_tokens: Cap on generated tokens; default 6 per passage plus 8.
        generate: Replaces the LM call (tests script the model's answers with it).
        options: Options named in :attr:`name` (set by :meth:`from_options`).
    """

    label = "listwise"

    def __init__(self, lm: CausalLM | None = None, *, store: DocStore | None = None,
                 window: int = DEFAULTS["window"], step: int = DEFAULTS["step"],
                 max_doc_tokens: int = DEFAULTS["max_doc_tokens"],
                 max_new_tokens: int | None = DEFAULTS["max_new_tokens"],
                 generate: Generate | None = None,
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(store=store, options=options)
        if lm is None and generate is None:
            raise ValueError("ListwiseReranker needs an lm or a generate function")
        windows(window, window, step)  # validates window and step
        self.lm, self.window, self.step = lm, window, step
        self.max_doc_tokens, self.max_new_tokens = max_doc_tokens, max_new_tokens
        self.generate: Generate = generate if generate is not None else self._generate
        self.stats = WindowStats()

    @classmethod
    def from_options(cls, store: DocStore | None = None, *, default_dtype: str = "auto",
                     **options: Any) -> ListwiseReranker:
        """The ``listwise`` stage of the textual pipeline form, e.g. ``listwise(window=10)``.

        Args:
            store: The index's document store.
            default_dtype: The model dtype when ``options`` names none (the settings' dtype);
                unlike the options it is not part of the stage's name.
            **options: ``model`` (default the packaged 0.5B), ``dtype``, ``device``, ``window``,
                ``step``, ``max_doc_tokens``, ``max_new_tokens``.

        Example:
            >>> listwise = ListwiseReranker.from_options(index.store)  # doctest: +SKIP
            >>> ranking = (bm25 % 20 >> listwise).search("tides")  # doctest: +SKIP
        """
        opts, named = split_options("listwise", {**DEFAULTS, "dtype": default_dtype}, options)
        lm = cached_lm(opts["model"], dtype=opts["dtype"], device=opts["device"])
        return cls(lm, store=store, window=opts["window"], step=opts["step"],
                   max_doc_tokens=opts["max_doc_tokens"],
                   max_new_tokens=opts["max_new_tokens"], options=named)

    def score_docs(self, query: Query, docs: Sequence[Doc]) -> list[float]:
        order = self.order(query, docs)
        scores = [0.0] * len(docs)
        for rank, i in enumerate(order):
            scores[i] = float(len(docs) - rank)
        return scores

    def order(self, query: Query, docs: Sequence[Doc]) -> list[int]:
        """Indices into ``docs``, best first, after one sliding pass."""
        texts = [self.passage(d) for d in docs]
        ranks = list(range(len(docs)))
        for start, end in windows(len(docs), self.window, self.step):
            if end - start < 2:
                continue
            part = ranks[start:end]
            answer = self.generate(query.text, [texts[i] for i in part])
            perm = parse_permutation(answer, len(part))
            ranks[start:end] = [part[j] for j in perm]
            self.stats.windows += 1
            self.stats.kept += perm == list(range(len(part)))
            self.stats.named_none += named(answer, len(part)) == 0
        return ranks

    def passage(self, doc: Doc) -> str:
        """``doc``'s text as one line, cut to ``max_doc_tokens`` tokens when a model is set."""
        text = " ".join(doc.contents().split())  # one line per passage
        if self.lm is None:
            return text
        return truncate_tokens(self.lm.tokenizer, text, self.max_doc_tokens)

    def prompt_ids(self, query: str, passages: Sequence[str]) -> list[int]:
        """Token ids of one window's chat prompt (what the model prefills before answering)."""
        if self.lm is None:
            raise ValueError("prompt_ids needs the reranker's lm")
        prompt = self.lm.chat_text(build_prompt(query, passages), system=SYSTEM)
        return list(self.lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    @torch.inference_mode()
    def _generate(self, query: str, passages: Sequence[str]) -> str:
        assert self.lm is not None
        tok = self.lm.tokenizer
        ids = torch.tensor([self.prompt_ids(query, passages)], device=self.lm.device)
        cap = self.max_new_tokens or 6 * len(passages) + 8
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        out = self.lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     do_sample=False, max_new_tokens=cap, pad_token_id=pad,
                                     top_p=None, top_k=None, temperature=None)
        return str(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
