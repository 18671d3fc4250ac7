"""Fusing a query vector with the vectors of its current events (cross-attention).

The query attends over the centroids of the events picked for it, and a gate mixes the
attended context into the query (a gated residual), giving a time-context query vector
for dense retrieval:

    a = softmax((W_q q) . (W_k e_i) / tau)        attention over the events
    c = W_o sum_i a_i W_v e_i                     event context
    g = sigmoid(w_g . [q; c] + b_g)               how much context to take
    q' = normalise((1 - g) q + g c)

:func:`pursuit.retrievers.events.retriever.fuse_default` is the same formula with identity projections, a fixed ``tau`` and a
fixed gate ``lam``: it needs no training. :class:`EventFusion` starts exactly there
(identity projections, zero gate weights, ``b_g = logit(lam)``), so an untrained module
and the default give the same vectors, and training (:func:`train_fusion`) moves away
from it only where the data says so. A query with no matching event keeps its vector.

Example:
    >>> module = EventFusion(384)  # doctest: +SKIP
    >>> train_fusion(module, batches, epochs=3)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pursuit.retrievers.events.retriever import DEFAULT_LAMBDA, DEFAULT_TAU


class EventFusion(nn.Module):
    """Cross-attention of a query vector over event vectors, with a gated residual.

    Args:
        dim: Vector dimension.
        tau: Initial attention temperature (learned as ``log tau``).
        lam: Initial gate; the untrained module equals :func:`fuse_default` with these.
    """

    def __init__(self, dim: int, *, tau: float = DEFAULT_TAU, lam: float = DEFAULT_LAMBDA):
        super().__init__()
        self.dim = dim
        self.q_proj, self.k_proj = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.v_proj, self.o_proj = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.o_proj):
            nn.init.eye_(layer.weight)
        self.log_tau = nn.Parameter(torch.tensor(math.log(tau)))
        self.gate = nn.Linear(2 * dim, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, math.log(lam / (1 - lam)))

    def forward(self, query: torch.Tensor, events: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Fused unit query vectors.

        Args:
            query: ``(batch, dim)``.
            events: ``(batch, m, dim)``.
            mask: ``(batch, m)`` bool, True for real events; a row without any keeps its
                query (normalised).

        Returns:
            ``(batch, dim)``.
        """
        q, e = self.q_proj(query), self.k_proj(events)
        logits = torch.einsum("bd,bmd->bm", q, e) / self.log_tau.exp()
        logits = logits.masked_fill(~mask, float("-inf"))
        has = mask.any(dim=1, keepdim=True)
        attn = torch.softmax(torch.where(has, logits, torch.zeros_like(logits)), dim=1)
        context = self.o_proj(torch.einsum("bm,bmd->bd", attn * mask, self.v_proj(events)))
        g = torch.sigmoid(self.gate(torch.cat([query, context], dim=1)))
        fused = torch.where(has, (1 - g) * query + g * context, query)
        return F.normalize(fused, dim=1)


@dataclass(frozen=True)
class FusionBatch:
    """Training examples for :func:`fusion_loss`, as tensors.

    Attributes:
        queries: ``(b, dim)`` query vectors.
        events: ``(b, m, dim)`` the events picked for each query (zero-padded).
        mask: ``(b, m)`` which events are real.
        positives: ``(b, dim)`` each query's gold document vector.
        negatives: ``(n, dim)`` extra negative documents shared by the batch (may be empty).
        gold_events: ``(b, dim)`` the centroid of the gold document's event.
        has_gold_event: ``(b,)`` bool, False where the gold document is in no event.
    """

    queries: torch.Tensor
    events: torch.Tensor
    mask: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    gold_events: torch.Tensor
    has_gold_event: torch.Tensor


def fusion_batch(queries: np.ndarray, events: Sequence[np.ndarray], positives: np.ndarray,
                 negatives: np.ndarray, gold_events: Sequence[np.ndarray | None]) -> FusionBatch:
    """A :class:`FusionBatch` from numpy arrays; ``events[i]`` is ``(m_i, dim)``, zero-padded.

    ``gold_events[i]`` is ``None`` where the gold document is in no usable event.
    """
    b, dim = len(queries), queries.shape[1]
    m = max([len(e) for e in events] + [1])
    padded, mask = np.zeros((b, m, dim), dtype=np.float32), np.zeros((b, m), dtype=bool)
    for i, e in enumerate(events):
        padded[i, : len(e)], mask[i, : len(e)] = e, True
    gold = np.stack([g if g is not None else np.zeros(dim) for g in gold_events])
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    return FusionBatch(t(queries), t(padded), torch.as_tensor(mask), t(positives),
                       t(negatives).reshape(-1, dim), t(gold),
                       torch.tensor([g is not None for g in gold_events]))


def fusion_loss(module: EventFusion, batch: FusionBatch, *, temperature: float = 0.05,
                event_weight: float = 0.5) -> torch.Tensor:
    """Contrastive retrieval loss plus the event objective.

    The retrieval part is InfoNCE: each fused query must score its gold document above
    the other queries' gold documents and the shared negatives. The event part pulls a
    fused query towards its gold document's event centroid (``1 - cosine``), averaged over
    the examples that have one.
    """
    fused = module(batch.queries, batch.events, batch.mask)
    docs = F.normalize(torch.cat([batch.positives, batch.negatives], dim=0), dim=1)
    logits = fused @ docs.T / temperature
    retrieval = F.cross_entropy(logits, torch.arange(len(fused)))
    has = batch.has_gold_event
    if not bool(has.any()):
        return retrieval
    cos = F.cosine_similarity(fused[has], batch.gold_events[has], dim=1)
    return retrieval + event_weight * (1 - cos).mean()


def train_fusion(module: EventFusion, batches: Sequence[FusionBatch], *, epochs: int = 5,
                 lr: float = 1e-3, seed: int = 0, temperature: float = 0.05,
                 event_weight: float = 0.5) -> list[float]:
    """Train ``module`` in place with AdamW; returns the mean loss of each epoch.

    Batches are visited in an order shuffled by ``seed`` each epoch.

    Example:
        >>> losses = train_fusion(EventFusion(384), batches, epochs=3)  # doctest: +SKIP
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    history = []
    module.train()
    for _ in range(epochs):
        total = 0.0
        for i in rng.permutation(len(batches)).tolist():
            loss = fusion_loss(module, batches[i], temperature=temperature,
                               event_weight=event_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        history.append(total / max(len(batches), 1))
    module.eval()
    return history


def fuse_with(module: EventFusion, query: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Run a trained module on one query and its ``(m, dim)`` events; numpy in and out."""
    with torch.no_grad():
        q = torch.as_tensor(np.asarray(query, dtype=np.float32)).reshape(1, -1)
        e = torch.as_tensor(np.asarray(events, dtype=np.float32)).reshape(1, len(events), -1)
        mask = torch.ones(1, len(events), dtype=torch.bool)
        return module(q, e, mask)[0].numpy().astype(np.float32)
