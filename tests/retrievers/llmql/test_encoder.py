"""The causal-LM encoder on a tiny random-weight model: exact token rows, padding that changes
nothing, the Encoder protocol, and a round trip through an index manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_lm import tiny_lm  # noqa: E402

from pursuit.indexes.collection import SearchIndex  # noqa: E402
from pursuit.indexes.errors import PursuitError  # noqa: E402
from pursuit.indexes.protocols import Encoder  # noqa: E402
from pursuit.indexes.records import Doc, Query  # noqa: E402
from pursuit.retrievers.llmql.encoder import LLMEncoder, last_positions, pad_rows  # noqa: E402
from pursuit.retrievers.lm.causal import wrap_causal_lm  # noqa: E402
from pursuit.retrievers.lm.dtypes import cpu_flags
from pursuit.retrievers.registry import encoder_for, index_stages  # noqa: E402

TEXTS = ["The moon pulls the ocean and makes the tide.", "Lava",
         "A python is a large snake; Python code is read often. " * 4]
DOCS = [Doc("a", TEXTS[0]), Doc("b", TEXTS[1], title="Volcano"), Doc("c", TEXTS[2])]


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    t = tiny_lm(seed=3, attn_implementation="sdpa")
    return wrap_causal_lm(t.model, t.tokenizer, "tiny")


def test_rows_are_the_prompt_then_end_token(tiny) -> None:  # type: ignore[no-untyped-def]
    enc = LLMEncoder(tiny, max_doc_tokens=4)
    assert isinstance(enc, Encoder)
    tok, end = tiny.tokenizer, tiny.tokenizer.convert_tokens_to_ids("<|im_end|>")
    rows = enc.rows(["the moon", TEXTS[0]], "passage")
    assert rows[0] == tok("Passage: the moon\nWrite a question this passage answers.")[
        "input_ids"] + [end]
    cut = tok.decode(tok(TEXTS[0])["input_ids"][:4])
    assert rows[1] == tok(f"Passage: {cut}\nWrite a question this passage answers.")[
        "input_ids"] + [end]
    assert enc.rows(["tides?"], "query")[0] == tok("Question: tides?\nRepeat this question.")[
        "input_ids"] + [end]


def test_last_positions_on_either_padding_side() -> None:
    for side, want in (("right", [2, 0, 3]), ("left", [3, 3, 3])):
        ids, mask = pad_rows([[5, 6, 7], [8], [1, 2, 3, 4]], 0, side=side)
        assert last_positions(mask).tolist() == want
        assert mask.sum(1).tolist() == [3, 1, 4]
    assert pad_rows([[5, 6], [7]], 9, side="left")[0].tolist() == [[5, 6], [9, 7]]


@pytest.mark.parametrize("pooling", ["end", "mean"])
def test_padded_batches_encode_like_each_text_alone(tiny, pooling: str) -> None:  # type: ignore[no-untyped-def]
    right = LLMEncoder(tiny, pooling=pooling, batch_size=3)
    left = LLMEncoder(tiny, pooling=pooling, batch_size=3, padding_side="left")
    batch = right.encode_document(TEXTS)
    alone = np.stack([right.encode_document([t])[0] for t in TEXTS])
    assert batch.dtype == np.float32 and batch.shape == (3, 64)
    np.testing.assert_allclose(batch, alone, atol=1e-6)
    np.testing.assert_allclose(left.encode_document(TEXTS), batch, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-6)
    assert right.encode_query([]).shape == (0, 64)
    assert not np.allclose(right.encode_query(TEXTS[:1]), batch[:1])  # the prompts differ


def test_end_pooling_is_the_final_normed_state_at_end(tiny) -> None:  # type: ignore[no-untyped-def]
    enc = LLMEncoder(tiny)
    row = enc.rows(["the tide"], "query")[0]
    with torch.no_grad():
        out = tiny.model(input_ids=torch.tensor([row]), output_hidden_states=True)
    want = torch.nn.functional.normalize(out.hidden_states[-1][0, -1], dim=-1).numpy()
    np.testing.assert_allclose(enc.encode_query(["the tide"])[0], want, atol=1e-6)


def test_bad_settings_say_what_to_do(tiny) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PursuitError, match=r"the query prompt must contain '\{text\}' exactly "
                                           r"once, got 'Question:'"):
        LLMEncoder(tiny, query_prompt="Question:")
    with pytest.raises(PursuitError, match="pooling must be one of end, mean, got 'max'"):
        LLMEncoder(tiny, pooling="max")
    with pytest.raises(PursuitError, match="end_token 'moon tide' is 3 tokens for this tokenizer, not one"):
        LLMEncoder(tiny, end_token="moon tide")


def test_encoder_round_trips_through_an_index_manifest(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "ckpt"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    recorded = {"prompts": {"passage": "Doc: {text}", "query": "Q: {text}"}, "pooling": "end",
                "end_token": "<|endoftext|>", "max_doc_tokens": 32, "max_query_tokens": 16,
                "base_model": "tiny-base"}
    (folder / "pursuit-llmql.json").write_text(json.dumps({"encoder": recorded}))
    enc = LLMEncoder(str(folder), dtype="float32", device="cpu", batch_size=2)
    assert enc.describe() == {
        "kind": "causal-lm", "model_id": str(folder), "checkpoint": str(folder),
        "base_model": "tiny-base", "dim": 64, "similarity": "cosine", "normalize": True,
        "pooling": "end", "prompts": recorded["prompts"], "end_token": "<|endoftext|>",
        "max_doc_tokens": 32, "max_query_tokens": 16, "dtype": "float32",
        "cpu_flags": cpu_flags()}
    index = SearchIndex.build(DOCS, tmp_path / "idx", source="toy", encoder=enc)
    index.close()
    with SearchIndex.open(tmp_path / "idx") as opened:
        assert opened.encoder_config == enc.describe()
        again = encoder_for(opened)
        assert isinstance(again, LLMEncoder) and again.describe() == enc.describe()
        ranking = index_stages(opened)["dense"]().search(Query("q", "the ocean tide"))
    vectors = enc.encode_document([d.contents() for d in DOCS])
    scores = vectors @ enc.encode_query(["the ocean tide"])[0]
    order = np.argsort(-scores)
    assert ranking.doc_ids() == [DOCS[i].id for i in order]
    np.testing.assert_allclose([h.score for h in ranking], scores[order], atol=1e-5)


def test_pursuit_index_takes_an_llmql_checkpoint_as_encoder(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pursuit.retrievers.encoders import SentenceTransformerEncoder
    from pursuit.ui.cli.indexing import make_encoder

    folder = tmp_path / "ckpt"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    (folder / "pursuit-llmql.json").write_text(json.dumps({"encoder": {
        "prompts": {"passage": "Doc: {text}", "query": "Q: {text}"}, "pooling": "end",
        "end_token": "<|endoftext|>"}}))
    enc = make_encoder(str(folder))
    assert isinstance(enc, LLMEncoder) and enc.describe()["checkpoint"] == str(folder)
    assert isinstance(make_encoder("all-MiniLM-L6-v2"), SentenceTransformerEncoder)
