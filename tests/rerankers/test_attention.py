"""Query-span attention rows recomputed from a prefix KV cache equal eager attention's."""

from __future__ import annotations

import pytest
import torch
from tiny_lm import TinyLM, tiny_lm

from pursuit.rerankers.attention import (
    decoder_layers,
    prefill,
    query_rows,
    reset_cache,
    span_attention,
)
from pursuit.rerankers.prompting import ICRPrompt, build_icr_prompt

CHAT = ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n")
DOCS = ["Tides\nThe moon pulls the ocean and makes the tide.",
        "Volcano\nLava flows from a volcano during an eruption.",
        "Python\nA python is a large snake; Python code is read often."]


@pytest.fixture(scope="module")
def eager() -> TinyLM:
    return tiny_lm(layers=3, seed=1, attn_implementation="eager")


@pytest.fixture(scope="module")
def sdpa() -> TinyLM:
    return tiny_lm(layers=3, seed=1, attn_implementation="sdpa")


def icr_prompt(lm: TinyLM, query: str) -> ICRPrompt:
    return build_icr_prompt(lm.tokenizer, DOCS, query, chat=CHAT)


def eager_rows(lm: TinyLM, prompt: ICRPrompt) -> list[torch.Tensor]:
    """Every layer's full attention (eager, output_attentions), sliced to the query rows."""
    ids = torch.tensor([list(prompt.prompt.input_ids)])
    with torch.no_grad():
        out = lm.model(ids, output_attentions=True)
    return [a[0, :, prompt.query_start:, :] for a in out.attentions]


def test_recomputed_rows_equal_eager_attention_for_every_layer(eager: TinyLM) -> None:
    prompt = icr_prompt(eager, "what causes tides?")
    reference = eager_rows(eager, prompt)
    cache = prefill(eager.model, prompt.prefix_ids)
    got = span_attention(eager.model, cache, prompt.query_ids, [0, 1, 2], keep_rows=True)
    span, length = len(prompt.query_ids), len(prompt.prompt.input_ids)
    for layer in range(3):
        assert got.rows[layer].shape == (4, span, length)
        torch.testing.assert_close(got.rows[layer], reference[layer], atol=1e-5, rtol=0)
    expected = sum(r.sum(dim=0).mean(dim=0) for r in reference)
    torch.testing.assert_close(got.scores, expected, atol=1e-5, rtol=0)
    # Causal: the first span token sees nothing after itself.
    assert got.rows[0][:, 0, prompt.query_start + 1:].abs().max().item() == 0.0


def test_sdpa_prefill_gives_the_eager_rows(eager: TinyLM, sdpa: TinyLM) -> None:
    prompt = icr_prompt(sdpa, "what causes tides?")
    reference = eager_rows(eager, prompt)
    cache = prefill(sdpa.model, prompt.prefix_ids)
    got = span_attention(sdpa.model, cache, prompt.query_ids, [1, 2], keep_rows=True)
    assert sorted(got.rows) == [1, 2]
    for layer in (1, 2):
        torch.testing.assert_close(got.rows[layer], reference[layer], atol=1e-5, rtol=0)


def test_shared_prefix_cache_serves_both_passes_like_fresh_forwards(sdpa: TinyLM) -> None:
    asked, calib = icr_prompt(sdpa, "what causes tides?"), icr_prompt(sdpa, "N/A")
    assert asked.prefix_ids == calib.prefix_ids
    cache = prefill(sdpa.model, asked.prefix_ids)
    prefix_len = len(asked.prefix_ids)
    first = span_attention(sdpa.model, cache, asked.query_ids, [0, 1, 2]).scores
    assert [layer.get_seq_length() for layer in cache.layers] == [prefix_len] * 3
    second = span_attention(sdpa.model, cache, calib.query_ids, [0, 1, 2]).scores
    fresh_first = span_attention(sdpa.model, prefill(sdpa.model, asked.prefix_ids),
                                 asked.query_ids, [0, 1, 2]).scores
    fresh_second = span_attention(sdpa.model, prefill(sdpa.model, calib.prefix_ids),
                                  calib.query_ids, [0, 1, 2]).scores
    assert torch.equal(first, fresh_first) and torch.equal(second, fresh_second)
    assert first.shape == (len(asked.prompt.input_ids),)
    assert second.shape == (len(calib.prompt.input_ids),)
    # Each layer's rows sum to one per span token: s sums to the number of heads x layers.
    assert first.sum().item() == pytest.approx(4 * 3, abs=1e-4)


def test_early_exit_prefill_fills_only_the_layers_needed(eager: TinyLM) -> None:
    prompt = icr_prompt(eager, "lava?")
    reference = eager_rows(eager, prompt)
    cache = prefill(eager.model, prompt.prefix_ids, last_layer=1)
    n = len(prompt.prefix_ids)
    assert [layer.get_seq_length() for layer in cache.layers] == [n, n, 0]
    got = span_attention(eager.model, cache, prompt.query_ids, [1], keep_rows=True)
    torch.testing.assert_close(got.rows[1], reference[1], atol=1e-5, rtol=0)
    assert [layer.get_seq_length() for layer in cache.layers] == [n, n, 0]


def test_query_rows_repeat_kv_heads_and_mask_the_future() -> None:
    q = torch.zeros(4, 2, 8)  # 4 query heads sharing 2 kv heads; equal logits everywhere
    keys = torch.randn(2, 5, 8)
    rows = query_rows(q, keys, 8 ** -0.5)
    # Span tokens are positions 3 and 4 of 5: uniform over 4 and over 5 keys.
    torch.testing.assert_close(rows[:, 0], torch.tensor([[0.25] * 4 + [0.0]] * 4))
    torch.testing.assert_close(rows[:, 1], torch.full((4, 5), 0.2))
    q = torch.zeros(4, 1, 8)
    q[2:, 0, 0] = 10.0  # heads 2, 3 read kv head 1
    keys = torch.zeros(2, 3, 8)
    keys[1, 1, 0] = 1.0
    rows = query_rows(q, keys, 1.0)
    assert rows[2, 0].argmax().item() == 1 and rows[3, 0].argmax().item() == 1
    torch.testing.assert_close(rows[0, 0], torch.full((3,), 1 / 3))


def test_bad_arguments_are_refused(eager: TinyLM) -> None:
    cache = prefill(eager.model, [1, 2, 3])
    with pytest.raises(ValueError, match="span_ids is empty"):
        span_attention(eager.model, cache, [], [0])
    with pytest.raises(ValueError, match=r"layer indices must lie in 0..2, got \[3\]"):
        span_attention(eager.model, cache, [4], [3])
    assert len(decoder_layers(eager.model)) == 3
    reset_cache(cache, 1)
    assert cache.get_seq_length() == 1
