"""The two LLM-QL losses: query likelihood under Attention Stop, and contrastive InfoNCE.

Stage 1 (query-likelihood modelling). Each row is ``passage prompt · [E] · query`` (right
padded). Under *Attention Stop* a query token attends to ``[E]`` and to earlier query tokens
only, never to a passage token, so whatever the query needs from the passage must pass
through ``[E]``'s state; the passage and ``[E]`` attend causally as usual. The mask is
built per row from that row's own prompt and query lengths. The loss is the mean next-token
cross-entropy over all query tokens of the batch (the state at ``[E]`` predicts the first).

Stage 2 (contrastive). Queries and passages are embedded as the encoder does
(:func:`~pursuit.retrievers.llmql.encoder.embed_rows`), and each query's positive is scored
against every passage of the batch (the other queries' positives and the mined hard
negatives) with temperature ``t``; passages relevant to the query other than its target
are left out of its softmax rather than counted as negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from pursuit.retrievers.llmql.encoder import embed_rows, pad_rows


def attention_stop_allowed(prompt_lens: Sequence[int], query_lens: Sequence[int],
                           width: int, *, stop: bool = True) -> torch.Tensor:
    """Boolean ``(B, width, width)``: may position ``i`` of row ``b`` attend to ``j``?

    Row ``b`` holds its prompt at ``[0, p)`` with ``[E]`` at ``p - 1``, its query at
    ``[p, p + q)`` and padding after. Allowed: causal pairs between real tokens, except a
    query token to a prompt token before ``[E]``. A padding position attends to itself only
    (it is never a target, and a row with no allowed key would give NaN). ``stop=False``
    gives the plain causal mask of the same rows.
    """
    pos = torch.arange(width)
    i, j = pos[None, :, None], pos[None, None, :]
    p = torch.tensor(list(prompt_lens))[:, None, None]
    end = p + torch.tensor(list(query_lens))[:, None, None]
    allowed = (j <= i) & (j < end)
    if stop:
        in_query, before_e = (i >= p) & (i < end), j < p - 1
        allowed &= ~(in_query & before_e)
    return torch.where(i >= end, i == j, allowed)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(B, 1, L, L)`` float mask: 0 where allowed, the dtype's minimum elsewhere.

    Eager attention adds its mask to the scores, so it needs this form.
    """
    mask = torch.zeros(allowed.shape, dtype=dtype)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def stage_mask(model: Any, allowed: torch.Tensor) -> torch.Tensor:
    """The 4-D mask ``model``'s attention takes: additive for eager, boolean otherwise.

    A boolean mask keeps SDPA happy under autocast, where the queries change dtype.
    """
    if getattr(model.config, "_attn_implementation", None) == "eager":
        return additive_mask(allowed, model.get_input_embeddings().weight.dtype)
    return allowed[:, None]


def ql_loss(model: Any, prompts: Sequence[Sequence[int]], queries: Sequence[Sequence[int]], *,
            pad_id: int, attention_stop: bool = True) -> torch.Tensor:
    """Mean next-token loss on the query tokens of ``prompt · query`` rows.

    Args:
        model: A transformers causal LM.
        prompts: Passage prompt ids per row, each ending with ``[E]``.
        queries: Query ids per row (at least one token each).
        pad_id: Padding id.
        attention_stop: Apply Attention Stop (``False``: plain causal attention).
    """
    device = next(model.parameters()).device
    rows = [[*a, *b] for a, b in zip(prompts, queries, strict=True)]
    ids, _ = pad_rows(rows, pad_id, side="right", device=device)
    width = ids.shape[1]
    p_lens, q_lens = [len(a) for a in prompts], [len(b) for b in queries]
    allowed = attention_stop_allowed(p_lens, q_lens, width, stop=attention_stop)
    attn = stage_mask(model, allowed).to(device)
    positions = torch.arange(width, device=device).expand(len(rows), width)
    hidden = model.base_model(input_ids=ids, attention_mask=attn, position_ids=positions,
                              use_cache=False).last_hidden_state
    # The state at position t predicts token t + 1: [E] predicts the first query token.
    rows_idx = torch.cat([torch.full((q,), b) for b, q in enumerate(q_lens)]).to(device)
    targets_at = torch.cat([torch.arange(p, p + q) for p, q in zip(p_lens, q_lens,
                                                                   strict=True)]).to(device)
    logits = model.get_output_embeddings()(hidden[rows_idx, targets_at - 1])
    return F.cross_entropy(logits.float(), ids[rows_idx, targets_at])


def contrastive_loss(model: Any, queries: Sequence[Sequence[int]],
                     passages: Sequence[Sequence[int]], targets: Sequence[int],
                     excluded: torch.Tensor, *, pad_id: int, temperature: float = 0.01,
                     pooling: str = "end") -> torch.Tensor:
    """InfoNCE of each query's target passage against all passages of the batch.

    Args:
        model: A transformers causal LM.
        queries: Query prompt ids (ending with ``[E]``), one per training pair.
        passages: Passage prompt ids of the batch's distinct passages.
        targets: Index into ``passages`` of each query's positive.
        excluded: Boolean ``(len(queries), len(passages))``: passages left out of a query's
            softmax (its other positives); a query's own target must not be excluded.
        pad_id: Padding id.
        temperature: Softmax temperature on the cosine similarities.
        pooling: ``"end"`` or ``"mean"``, as the encoder uses.
    """
    q = embed_rows(model, queries, pad_id=pad_id, pooling=pooling)
    d = embed_rows(model, passages, pad_id=pad_id, pooling=pooling)
    scores = (q @ d.T) / temperature
    scores = scores.masked_fill(excluded.to(scores.device), float("-inf"))
    return F.cross_entropy(scores, torch.tensor(list(targets), device=scores.device))
