"""BlockRank fine-tuning on a tiny random-weight model: real optimisation steps, a loss that
falls on a fixed batch, gradients that reach the weights (and none above l* from InfoNCE)."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_lm import tiny_lm  # noqa: E402

from pursuit.indexes.errors import PursuitError  # noqa: E402
from pursuit.indexes.records import Doc  # noqa: E402
from pursuit.rerankers.blockrank.finetune import TrainExample, blockrank_loss, train  # noqa: E402
from pursuit.rerankers.blockrank.reranker import BlockRankReranker  # noqa: E402
from pursuit.retrievers.lm.causal import wrap_causal_lm  # noqa: E402

DOCS = (Doc("a", "The moon pulls the ocean and makes the tide."),
        Doc("b", "Lava flows from a volcano during an eruption."),
        Doc("c", "A python is a large snake."))
EXAMPLES = [TrainExample("what causes tides?", DOCS, frozenset({"a"})),
            TrainExample("where does lava come from?", DOCS[::-1], frozenset({"b", "c"}))]


def fresh_lm():  # type: ignore[no-untyped-def]
    tiny = tiny_lm(layers=3, seed=1)
    return wrap_causal_lm(tiny.model, tiny.tokenizer, "tiny-train")


def test_loss_parts_match_their_definitions() -> None:
    lm = fresh_lm()
    parts = blockrank_loss(lm, EXAMPLES[1], layer=1)
    s = parts.scores.detach() / 0.05
    # documents are c, b, a; positives b and c
    want = math.log(sum(math.exp(x) for x in s.tolist())) - math.log(
        math.exp(s[0].item()) + math.exp(s[1].item()))
    assert parts.infonce.item() == pytest.approx(want, rel=1e-5)
    assert parts.total.item() == pytest.approx(parts.lm.item() + 0.1 * parts.infonce.item(),
                                               rel=1e-6)
    # the scores under training equal the reranker's with the same signal
    zero_shot = BlockRankReranker(lm, layer=1, max_doc_tokens=160, cache_bytes=0,
                                  signal="answer")  # the signal the loss trains
    got = zero_shot.score(EXAMPLES[1].query, EXAMPLES[1].docs)
    torch.testing.assert_close(parts.scores.detach(), torch.from_numpy(got), atol=1e-5, rtol=1e-4)
    with pytest.raises(PursuitError, match="has no positive among its documents"):
        blockrank_loss(lm, TrainExample("q", DOCS, frozenset({"zzz"})), layer=1)


def test_gradients_reach_the_weights_and_infonce_stops_at_layer() -> None:
    lm = fresh_lm()
    parts = blockrank_loss(lm, EXAMPLES[0], layer=1)
    parts.infonce.backward()
    layers = lm.model.model.layers
    assert layers[0].self_attn.k_proj.weight.grad.abs().sum() > 0
    assert layers[1].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert layers[2].self_attn.q_proj.weight.grad is None   # above l*: no part in the scores
    lm.model.zero_grad(set_to_none=True)
    blockrank_loss(lm, EXAMPLES[0], layer=1).lm.backward()
    assert layers[2].mlp.down_proj.weight.grad.abs().sum() > 0


def test_training_steps_lower_the_loss_on_a_fixed_batch() -> None:
    lm = fresh_lm()
    before = [p.detach().clone() for p in lm.model.parameters()]
    losses = train(lm, EXAMPLES, layer=1, lr=3e-3, epochs=6, batch_size=2)
    assert len(losses) == 6
    assert losses[-1] < 0.7 * losses[0]
    assert all(b > a for a, b in zip(losses[1:], losses, strict=False))  # falls every step
    changed = [not torch.equal(a, b) for a, b in zip(before, lm.model.parameters(), strict=True)]
    assert all(changed) and not lm.model.training
