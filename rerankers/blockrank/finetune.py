"""Fine-tuning BlockRank: next-token loss on the answer + 0.1 x multi-positive InfoNCE.

The loss of one example (``docs/methods.md`` §2): the prompt of :mod:`pursuit.rerankers.blockrank.blocks`
with the answer ``"{id of a relevant document}]"`` appended after ``Final Answer: [``,
run under the block-sparse mask through every layer. ``lm`` is the mean next-token loss on
the answer tokens; ``infonce`` is a multi-positive InfoNCE over the documents' layer-``l*``
attention masses (the very scores the zero-shot reranker ranks by) divided by a temperature:
``-log(sum_pos exp(s/t) / sum_all exp(s/t))``. ``total = lm + 0.1 * infonce``.

A GPU run (the paper's recipe, not run here): Mistral-7B-Instruct in bf16, ``layer=20``
(of 32), ``lr=3e-6``, one epoch over 10% of MS MARCO passage training queries with 30
documents each (the positives plus hard negatives from a first stage), ``max_doc_tokens=160``,
``temperature=0.05``, ``infonce_weight=0.1``. Full fine-tuning with AdamW keeps about
16 bytes per parameter (bf16 weights and gradients, fp32 moments), ~112 GB for 7B, which
fits one H200 (139 GiB) with a batch of one example; more needs gradient checkpointing or
a sharded optimiser. Sketch::

    lm = load_causal_lm("mistralai/Mistral-7B-Instruct-v0.3", dtype="bfloat16", device="cuda")
    losses = train(lm, examples, layer=20, lr=3e-6, epochs=1, max_doc_tokens=160)
    lm.model.save_pretrained("blockrank-mistral-7b")   # then BlockRankReranker(model=...)

Example:
    >>> ex = TrainExample("what causes tides?", (doc_a, doc_b), frozenset({"a"}))  # doctest: +SKIP
    >>> losses = train(lm, [ex], layer=1, lr=1e-3, epochs=3)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc
from pursuit.rerankers.blockrank.blocks import build_layout
from pursuit.rerankers.blockrank.forward import BlockForward, score_layout

if TYPE_CHECKING:
    from pursuit.retrievers.lm.causal import CausalLM


@dataclass(frozen=True)
class TrainExample:
    """One training query with its candidate documents.

    Attributes:
        query: The query text.
        docs: Candidates (positives and negatives) in any order.
        positives: Ids of the relevant documents among ``docs`` (at least one).
    """

    query: str
    docs: tuple[Doc, ...]
    positives: frozenset[str]


@dataclass
class LossParts:
    """The loss of one example and its parts.

    Attributes:
        total: ``lm + infonce_weight * infonce`` (differentiable).
        lm: Mean next-token loss on the answer tokens.
        infonce: Multi-positive InfoNCE over the layer-``l*`` document scores.
        scores: The documents' attention masses (same order as the example's documents).
    """

    total: torch.Tensor
    lm: torch.Tensor
    infonce: torch.Tensor
    scores: torch.Tensor


def blockrank_loss(lm: CausalLM, example: TrainExample, *, layer: int,
                   max_doc_tokens: int | None = 160, temperature: float = 0.05,
                   infonce_weight: float = 0.1, path: str = "batched") -> LossParts:
    """The BlockRank fine-tuning loss of one example (gradients flow to the weights).

    Args:
        lm: The model being trained.
        example: Query, documents and the ids of the relevant ones.
        layer: Scoring layer ``l*`` (0-based) whose attention the InfoNCE term trains.
        max_doc_tokens: Token budget of a document block (160 in the paper's training).
        temperature: InfoNCE temperature on the attention masses.
        infonce_weight: Weight of the InfoNCE term.
        path: Attention path for the document blocks (``"batched"`` or ``"mask"``).
    """
    ids = [d.id for d in example.docs]
    pos = [d in example.positives for d in ids]
    if not any(pos):
        raise PursuitError(f"example {example.query!r} has no positive among its documents "
                           f"{ids[:5]}; every TrainExample needs at least one")
    answer = f"{ids[pos.index(True)]}]"
    # The paper's signal: the answer prefix's last token, which the loss teaches to attend
    # to the positive documents (score the tuned model with signal="answer").
    layout = build_layout(lm, example.query, example.docs, max_doc_tokens=max_doc_tokens,
                          signal="answer", answer=answer)
    run = score_layout(BlockForward(lm.model, layer), layout, model_id=lm.model_id, path=path,
                       logits=True)
    assert run.logits is not None
    start = layout.signal[-1] + 1  # first answer token; the logit before it predicts it
    targets = torch.tensor(layout.query[start:], device=run.logits.device)
    lm_loss = F.cross_entropy(run.logits[start - 1:-1].float(), targets)
    s = run.scores / temperature
    mask = torch.tensor(pos, device=s.device)
    infonce = torch.logsumexp(s, 0) - torch.logsumexp(s[mask], 0)
    return LossParts(lm_loss + infonce_weight * infonce, lm_loss, infonce, run.scores)


def finetune_step(lm: CausalLM, optimizer: torch.optim.Optimizer,
                  batch: Sequence[TrainExample], *, layer: int, max_grad_norm: float = 1.0,
                  **loss_options: Any) -> float:
    """One optimisation step on ``batch`` (mean loss); returns the loss before the step.

    Args:
        lm: The model being trained (its parameters are in ``optimizer``).
        optimizer: E.g. ``torch.optim.AdamW(lm.model.parameters(), lr=3e-6)``.
        batch: Training examples.
        layer: Scoring layer ``l*``.
        max_grad_norm: Gradient clipping norm.
        **loss_options: Passed to :func:`blockrank_loss`.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = torch.stack([blockrank_loss(lm, ex, layer=layer, **loss_options).total
                        for ex in batch]).mean()
    loss.backward()  # type: ignore[no-untyped-call]
    torch.nn.utils.clip_grad_norm_(lm.model.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss.detach())


def train(lm: CausalLM, examples: Sequence[TrainExample], *, layer: int, lr: float = 3e-6,
          epochs: int = 1, batch_size: int = 1, weight_decay: float = 0.0,
          **loss_options: Any) -> list[float]:
    """Fine-tune ``lm`` for BlockRank with AdamW; returns the loss of every step.

    The model is left in eval mode afterwards, ready for
    :class:`~pursuit.rerankers.blockrank.reranker.BlockRankReranker`.

    Args:
        lm: The model to train in place.
        examples: Training examples, visited in order each epoch.
        layer: Scoring layer ``l*``.
        lr: Learning rate (3e-6 for Mistral-7B in the paper).
        epochs: Passes over ``examples``.
        batch_size: Examples per step.
        weight_decay: AdamW weight decay.
        **loss_options: Passed to :func:`blockrank_loss`.

    Example:
        >>> train(lm, examples, layer=20, lr=3e-6)  # doctest: +SKIP
    """
    optimizer = torch.optim.AdamW(lm.model.parameters(), lr=lr, weight_decay=weight_decay)
    lm.model.train()
    losses = []
    try:
        for _ in range(epochs):
            for a in range(0, len(examples), batch_size):
                losses.append(finetune_step(lm, optimizer, examples[a:a + batch_size],
                                            layer=layer, **loss_options))
    finally:
        lm.model.eval()
    return losses
