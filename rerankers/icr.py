"""ICR: in-context reranking from a causal LM's attention (Chen et al., ICLR 2025).

The candidates go into one prompt, first-stage best *last* (nearest the query), followed by
the instruction and the query. A document's score is the attention the query span pays to
its tokens, calibrated by the attention a content-free query ("N/A") pays to them:

    c(t) = s_query(t) - s_NA(t);  score(d) = sum of c(t) over t in d with c(t) > mean - 2 std

(mean and population std per document). The documents prefix is prefilled once and its KV
cache shared by both passes; attention is read as the query-span rows only
(:mod:`pursuit.rerankers.attention`).

Example:
    >>> pipeline = bm25 % 100 >> ICRReranker.from_options(index.store) % 10  # doctest: +SKIP
    >>> pipeline.search("does vitamin D prevent fractures?").doc_ids()[:3]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc, Query
from pursuit.rerankers.attention import decoder_layers, prefill, span_attention
from pursuit.rerankers.base import Reranker, cached_lm, split_options
from pursuit.rerankers.prompting import (
    INSTRUCTIONS,
    ICRPrompt,
    build_icr_prompt,
    truncate_tokens,
    truncate_words,
)
from pursuit.retrievers.lm.causal import DEFAULT_LLM, CausalLM

__all__ = ["ICRReranker", "calibrated_scores", "resolve_layers"]

#: The query of the calibration pass.
CALIBRATION_QUERY = "N/A"
#: Every option of the textual form and its default: the one source of the defaults, which
#: the constructor uses too. A stage's name shows the options its text gave.
DEFAULTS: dict[str, Any] = {"model": DEFAULT_LLM, "dtype": "auto", "device": "auto",
                            "layers": "middle", "max_words": 300, "max_tokens": None,
                            "instruction": "retrieval"}


def resolve_layers(layers: str | Sequence[int], n_layers: int) -> tuple[int, ...]:
    """Decoder layer indices for a layer-set option.

    Args:
        layers: ``"all"``; ``"middle"`` (the middle third: ``n//3 .. n - n//3 - 1``, e.g.
            8..15 of 24); explicit indices (negative count from the end) or a
            comma-separated string of them.
        n_layers: The model's number of decoder layers.

    Example:
        >>> resolve_layers("middle", 24)
        (8, 9, 10, 11, 12, 13, 14, 15)
    """
    if layers == "all":
        return tuple(range(n_layers))
    if layers == "middle":
        return tuple(range(n_layers // 3, n_layers - n_layers // 3))
    items = layers.split(",") if isinstance(layers, str) else list(layers)
    try:
        indices = [int(i) for i in items]
    except (TypeError, ValueError):
        indices = []
    if not indices or any(not -n_layers <= i < n_layers for i in indices):
        raise PursuitError(f"layers={layers!r} is not a layer set; use 'all', 'middle' or "
                           f"indices in 0..{n_layers - 1} (e.g. layers='8,9,10')")
    return tuple(sorted({i % n_layers for i in indices}))


def calibrated_scores(s_query: torch.Tensor, s_na: torch.Tensor,
                      doc_spans: Sequence[tuple[int, int]]) -> list[float]:
    """Per-document ICR scores from query and calibration attention.

    Within each document, tokens with c(t) <= mean - 2 std (population std) are dropped as
    intrinsically biased; the score is the sum of c(t) over the rest. An empty span scores 0.

    Args:
        s_query: s(t) of the query pass over (at least) the prefix tokens.
        s_na: s(t) of the "N/A" pass over the same tokens.
        doc_spans: Token span ``(start, end)`` of each document.
    """
    calibrated = s_query.double() - s_na.double()
    scores = []
    for start, end in doc_spans:
        c = calibrated[start:end]
        if c.numel() == 0:
            scores.append(0.0)
            continue
        threshold = c.mean() - 2 * c.std(correction=0)
        scores.append(float(c[c > threshold].sum()))
    return scores


class ICRReranker(Reranker):
    """Rerank candidates by calibrated query-span attention (ICR).

    Args:
        lm: The causal LM (:meth:`from_options` loads the packaged 0.5B by default; the 1.5B
            is the stronger and slower choice: BENCHMARKS.md, Reranking).
        store: Where to fetch document text for hits that carry none.
        layers: ``"middle"`` (default: the best mean nDCG@10 of the layer sets measured on
            100 SciFact queries with both packaged models, at two thirds of the prefill; see
            ``bench/icr_layers.py``), ``"all"`` or explicit decoder layer indices.
        max_words: Words kept per document (the paper: 300); ``None`` keeps all.
        max_tokens: Tokens kept per document after the word cut; ``None`` for no limit.
        instruction: ``"retrieval"`` or ``"qa"`` (see :data:`INSTRUCTIONS`).
        options: Options named in :attr:`name` (set by :meth:`from_options`).
    """

    label = "icr"

    def __init__(self, lm: CausalLM, *, store: DocStore | None = None,
                 layers: str | Sequence[int] = DEFAULTS["layers"],
                 max_words: int | None = DEFAULTS["max_words"],
                 max_tokens: int | None = DEFAULTS["max_tokens"],
                 instruction: str = DEFAULTS["instruction"],
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(store=store, options=options)
        if instruction not in INSTRUCTIONS:
            raise PursuitError(f"instruction={instruction!r} is not known; use one of "
                               f"{', '.join(map(repr, INSTRUCTIONS))}")
        self.lm = lm
        self.layers = resolve_layers(layers, len(decoder_layers(lm.model)))
        self.max_words, self.max_tokens, self.instruction = max_words, max_tokens, instruction

    @classmethod
    def from_options(cls, store: DocStore | None = None, *, default_dtype: str = "auto",
                     **options: Any) -> ICRReranker:
        """The ``icr`` stage of the textual pipeline form, e.g. ``bm25%10>>icr(layers='all')``.

        Args:
            store: The index's document store.
            default_dtype: The model dtype when ``options`` names none (the settings' dtype);
                unlike the options it is not part of the stage's name.
            **options: ``model`` (packaged name, hub id or path; default the packaged 0.5B),
                ``dtype``, ``device``, ``layers``, ``max_words``, ``max_tokens``, ``instruction``.

        Example:
            >>> icr = ICRReranker.from_options(index.store)  # doctest: +SKIP
        >>> ranking = (bm25 % 10 >> icr).search("tides")  # doctest: +SKIP
        """
        opts, named = split_options("icr", {**DEFAULTS, "dtype": default_dtype}, options)
        lm = cached_lm(opts["model"], dtype=opts["dtype"], device=opts["device"])
        return cls(lm, store=store, layers=opts["layers"], max_words=opts["max_words"],
                   max_tokens=opts["max_tokens"], instruction=opts["instruction"],
                   options=named)

    def _text(self, doc: Doc) -> str:
        text = truncate_words(doc.contents(), self.max_words)
        return truncate_tokens(self.lm.tokenizer, text, self.max_tokens)

    def prompt(self, query: str, docs: Sequence[Doc]) -> ICRPrompt:
        """The prompt for ``query`` with ``docs`` in prompt order (the last nearest the query)."""
        tokenizer = self.lm.tokenizer
        chat = self.lm.chat_prompt("") if getattr(tokenizer, "chat_template", None) else ("", "")
        return build_icr_prompt(tokenizer, [self._text(d) for d in docs], query,
                                instruction=INSTRUCTIONS[self.instruction], chat=chat)

    def prompt_scores(self, query: str, docs: Sequence[Doc]) -> list[float]:
        """ICR scores of ``docs`` given in prompt order.

        One prefill of the documents prefix; its cache serves the query pass and the "N/A"
        pass, each reading only its own span's attention rows.
        """
        asked, calib = self.prompt(query, docs), self.prompt(CALIBRATION_QUERY, docs)
        if asked.prefix_ids != calib.prefix_ids:
            raise PursuitError("the documents prefix tokenised differently for the query and "
                               "for the calibration query; report this with the model name")
        model = self.lm.model
        cache = prefill(model, asked.prefix_ids, last_layer=self.layers[-1])
        n = asked.query_start
        s_q = span_attention(model, cache, asked.query_ids, self.layers).scores[:n]
        s_na = span_attention(model, cache, calib.query_ids, self.layers).scores[:n]
        return calibrated_scores(s_q, s_na, asked.doc_spans)

    def score_docs(self, query: Query, docs: Sequence[Doc]) -> list[float]:
        """ICR scores of ``docs`` given best first; the first goes last in the prompt."""
        return self.prompt_scores(query.text, docs[::-1])[::-1]
