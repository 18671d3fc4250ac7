"""Query-likelihood reranking with a causal LM (LLM-QL scoring, docs/methods.md §3).

score(q, d) = mean over the query's tokens of log P(token | document prompt, earlier query
tokens), teacher-forced, no generation. The prompt puts the document in the user turn of
the chat template and the query in the assistant turn, after a ``Question:`` label::

    <chat prefix>Passage: {title}\\n{text}\\nWrite a question this passage answers.<chat suffix>Question: {query}

Only the query's tokens are scored (not the end-of-turn token), and the query is tokenised
on its own (``" " + query``) so every document sees exactly the same query tokens.
Documents are cut to ``max_doc_tokens`` tokens; the query and instruction never are.

Two batched paths give the same scores:

* plain: each (document, query) pair is one left-padded row, so every row's query ends at
  the last position and only the last ``len(query) + 1`` positions are projected onto the
  vocabulary;
* shared prefixes (:meth:`QLReranker.batch` when a document is a candidate of several
  queries): the document prompt is prefilled once and its KV cache is reused by every
  query's continuation.

Example:
    >>> ql = QLReranker.from_options(index.store)              # doctest: +SKIP
    >>> (bm25 % 10 >> ql).search("what causes tides?")         # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pursuit.indexes.docstore import DocStore
from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.rerankers.base import (
    NeedsFirstStageError,
    Reranker,
    cached_lm,
    split_options,
    strict_ranking,
)
from pursuit.rerankers.prompting import truncate_tokens
from pursuit.retrievers.lm.causal import CausalLM, cache_kwargs, output_cache

INSTRUCTION = "Write a question this passage answers."
ANSWER_LABEL = "Question:"
#: Every option of the textual form and its default: the one source of the defaults, which
#: the constructor uses too. A stage's name shows the options its text gave.
DEFAULTS: dict[str, Any] = {"model": None, "dtype": "auto", "device": "auto",
                            "max_doc_tokens": 400, "batch_size": 8, "share_prefixes": True}


class QLReranker(Reranker):
    """Rerank by the mean log-likelihood of the query given each document.

    Args:
        lm: The causal LM (see :func:`pursuit.retrievers.lm.causal.load_causal_lm`).
        store: Where document text comes from when candidates carry none.
        max_doc_tokens: Documents are cut to this many tokens.
        batch_size: (document, query) rows per forward pass.
        share_prefixes: In :meth:`batch`, prefill a document shared by several queries once.
        options: Options named in :attr:`name` (set by :meth:`from_options`).
    """

    label = "ql"

    def __init__(self, lm: CausalLM, *, store: DocStore | None = None,
                 max_doc_tokens: int = DEFAULTS["max_doc_tokens"],
                 batch_size: int = DEFAULTS["batch_size"],
                 share_prefixes: bool = DEFAULTS["share_prefixes"],
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(store=store, options=options)
        if max_doc_tokens < 1 or batch_size < 1:
            raise ValueError(f"max_doc_tokens and batch_size must be >= 1, got "
                             f"{max_doc_tokens} and {batch_size}")
        self.lm, self.max_doc_tokens, self.batch_size = lm, max_doc_tokens, batch_size
        self.share_prefixes = share_prefixes
        # Base models without a chat template get the bare prompt on its own lines.
        has_template = bool(getattr(lm.tokenizer, "chat_template", None))
        self._chat = lm.chat_prompt(INSTRUCTION) if has_template else ("", "\n")

    @classmethod
    def from_options(cls, store: DocStore | None = None, *, default_dtype: str = "auto",
                     **options: Any) -> QLReranker:
        """The ``ql`` stage of the textual pipeline form, e.g. ``ql(model='qwen2.5-coder-1.5b')``.

        Args:
            store: The index's document store.
            default_dtype: The model dtype when ``options`` names none (the settings' dtype);
                unlike the options it is not part of the stage's name.
            **options: ``model`` (packaged name, hub id or path; default the packaged 0.5B),
                ``dtype``, ``device``, ``max_doc_tokens``, ``batch_size``, ``share_prefixes``.

        Example:
            >>> ql = QLReranker.from_options(index.store)  # doctest: +SKIP
            >>> ranking = (bm25 % 20 >> ql % 10).search("tides")  # doctest: +SKIP
        """
        opts, named = split_options("ql", {**DEFAULTS, "dtype": default_dtype}, options)
        lm = cached_lm(opts["model"], dtype=opts["dtype"], device=opts["device"])
        return cls(lm, store=store, max_doc_tokens=opts["max_doc_tokens"],
                   batch_size=opts["batch_size"], share_prefixes=opts["share_prefixes"],
                   options=named)

    # Tokens -----------------------------------------------------------------------
    def doc_prompt(self, doc: Doc) -> str:
        """The document's prompt, up to and including the ``Question:`` label."""
        text = truncate_tokens(self.lm.tokenizer, doc.contents(), self.max_doc_tokens)
        prefix, suffix = self._chat
        return f"{prefix}Passage: {text}\n{INSTRUCTION}{suffix}{ANSWER_LABEL}"

    def _ids(self, text: str) -> list[int]:
        return list(self.lm.tokenizer(text, add_special_tokens=False)["input_ids"])

    def query_ids(self, query: Query) -> list[int]:
        """The scored tokens: the query after a space, tokenised alone."""
        return self._ids(" " + query.text)

    # Scoring ----------------------------------------------------------------------
    def score_docs(self, query: Query, docs: Sequence[Doc]) -> np.ndarray:
        q = self.query_ids(query)
        return self.score_pairs([(self._ids(self.doc_prompt(d)), q) for d in docs])

    @torch.inference_mode()
    def score_pairs(self, pairs: Sequence[tuple[list[int], list[int]]]) -> np.ndarray:
        """Mean log P(query ids | prompt ids) per pair, left-padded rows, ``batch_size`` at a time."""
        out = np.zeros(len(pairs))
        # Rows of similar length share a batch: less padding, same scores.
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            rows = [pairs[i][0] + pairs[i][1] for i in chunk]
            ids, mask = _pad(rows, self._pad_id, left=True, device=self.lm.device)
            n_q = [len(pairs[i][1]) for i in chunk]
            k = max(max(n_q), 1)
            logits = self.lm.model(input_ids=ids, attention_mask=mask,
                                   position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                                   logits_to_keep=k + 1).logits[:, :-1]
            targets = ids[:, -k:]
            valid = torch.arange(k, device=ids.device)[None, :] >= k - torch.tensor(
                n_q, device=ids.device)[:, None]
            out[chunk] = _mean_logprob(logits, targets, valid)
        return out

    @torch.inference_mode()
    def score_shared(self, prompts: Sequence[list[int]],
                     queries: Sequence[Sequence[list[int]]]) -> list[np.ndarray]:
        """Scores of ``queries[i]`` against ``prompts[i]``, prefilling each prompt once.

        Prompts are prefilled ``batch_size`` at a time (left-padded); their KV cache is
        then gathered once per (prompt, query) row and only the query tokens run.
        """
        out = [np.zeros(len(qs)) for qs in queries]
        device = self.lm.device
        for start in range(0, len(prompts), self.batch_size):
            docs = list(range(start, min(start + self.batch_size, len(prompts))))
            ids, mask = _pad([prompts[i] for i in docs], self._pad_id, left=True, device=device)
            pre = self.lm.model(input_ids=ids, attention_mask=mask, use_cache=True,
                                position_ids=(mask.cumsum(-1) - 1).clamp(min=0), logits_to_keep=1)
            first = torch.log_softmax(pre.logits[:, -1].float(), dim=-1)
            rows = [(b, j) for b, i in enumerate(docs) for j in range(len(queries[i]))]
            for r0 in range(0, len(rows), self.batch_size):
                part = rows[r0:r0 + self.batch_size]
                sel = torch.tensor([b for b, _ in part], device=device)
                qs = [queries[docs[b]][j] for b, j in part]
                cache = copy.deepcopy(output_cache(pre))
                cache.batch_select_indices(sel)
                q_ids, q_mask = _pad(qs, self._pad_id, left=False, device=device)
                start_pos = mask[sel].sum(-1, keepdim=True)
                logits = self.lm.model(
                    input_ids=q_ids, attention_mask=torch.cat([mask[sel], q_mask], dim=1),
                    position_ids=start_pos + torch.arange(q_ids.shape[1], device=device),
                    use_cache=True, **cache_kwargs(self.lm.model, cache)).logits
                # Token 0 is predicted by the prompt's last position, token j by query position j-1.
                lp_rest = _token_logprobs(logits[:, :-1], q_ids[:, 1:])
                lp0 = first[sel].gather(1, q_ids[:, :1]).squeeze(1)
                total = lp0 * (q_mask[:, 0] > 0) + (lp_rest * q_mask[:, 1:]).sum(-1)
                means = (total / q_mask.sum(-1).clamp(min=1)).cpu().numpy()
                for (b, j), v in zip(part, means.tolist(), strict=True):
                    out[docs[b]][j] = v
        return out

    @property
    def _pad_id(self) -> int:
        tok = self.lm.tokenizer
        return int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

    # Stage ------------------------------------------------------------------------
    def batch(self, queries: Sequence[Query | str],
              candidates: Sequence[Ranking] | None = None) -> list[Ranking]:
        """Rerank many queries; a document hit by several queries is prefilled once."""
        if candidates is None:
            raise NeedsFirstStageError(self.name)
        qs = [Query.coerce(q) for q in queries]
        if len(candidates) != len(qs):
            raise ValueError(f"batch got {len(qs)} queries but {len(candidates)} candidate lists")
        if not self.share_prefixes:
            return [self.transform(q, c) for q, c in zip(qs, candidates, strict=True)]
        docs: dict[str, Doc] = {}
        users: dict[str, list[int]] = {}  # document id -> indices of the queries it serves
        for n, c in enumerate(candidates):
            if len(c):
                docs.update(self.fetch_docs(c))
            for doc_id in c.doc_ids():
                users.setdefault(doc_id, []).append(n)
        q_ids = [self.query_ids(q) for q in qs]
        per_query: list[dict[str, float]] = [{} for _ in qs]
        # A document with one query has nothing to share: one plain row is cheaper.
        alone = [d for d, ns in users.items() if len(ns) == 1]
        plain = self.score_pairs([(self._ids(self.doc_prompt(docs[d])), q_ids[users[d][0]])
                                  for d in alone]) if alone else np.zeros(0)
        for d, v in zip(alone, plain.tolist(), strict=True):
            per_query[users[d][0]][d] = v
        shared = [d for d, ns in users.items() if len(ns) > 1]
        scores = self.score_shared([self._ids(self.doc_prompt(docs[d])) for d in shared],
                                   [[q_ids[n] for n in users[d]] for d in shared])
        for d, values in zip(shared, scores, strict=True):
            for n, v in zip(users[d], values.tolist(), strict=True):
                per_query[n][d] = v
        return [strict_ranking(q, c.doc_ids(), [per_query[n][d] for d in c.doc_ids()],
                               pipeline=self.name, index=c.provenance.index, docs=docs)
                for n, (q, c) in enumerate(zip(qs, candidates, strict=True))]


def _pad(rows: Sequence[Sequence[int]], pad: int, *, left: bool,
         device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span] = torch.tensor(list(r), dtype=torch.long)
        mask[i, span] = 1
    return ids.to(device), mask.to(device)


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per position, in float32, without a vocabulary-sized copy."""
    logits = logits.float()
    return logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _mean_logprob(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    lp = _token_logprobs(logits, targets) * valid
    return (lp.sum(-1) / valid.sum(-1).clamp(min=1)).cpu().numpy()
