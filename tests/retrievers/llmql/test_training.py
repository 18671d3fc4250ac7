"""LLM-QL training on a tiny random-weight model: the Attention Stop mask position by position,
input corruption rates, losses that match their definitions and fall after a real step,
LoRA, and checkpoints that resume to exactly the uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_lm import tiny_lm  # noqa: E402

from pursuit.indexes.datasets.beir import Dataset, read_beir  # noqa: E402
from pursuit.indexes.errors import PursuitError  # noqa: E402
from pursuit.indexes.records import Doc, Query  # noqa: E402
from pursuit.retrievers.llmql.data import (  # noqa: E402
    corrupt_words,
    mask_token,
    mine_hard_negatives,
    step_batch,
    training_pairs,
)
from pursuit.retrievers.llmql.encoder import LLMEncoder, embed_rows  # noqa: E402
from pursuit.retrievers.llmql.lora import LoRALinear, apply_lora, merge_lora  # noqa: E402
from pursuit.retrievers.llmql.loss import (  # noqa: E402
    additive_mask,
    attention_stop_allowed,
    contrastive_loss,
    ql_loss,
)
from pursuit.retrievers.llmql.steps import lr_at, optimizer_for, optimizer_step  # noqa: E402
from pursuit.retrievers.llmql.training import LLMQLConfig, train_llmql  # noqa: E402
from pursuit.retrievers.lm.causal import wrap_causal_lm  # noqa: E402

CORPUS = [Doc("a", "The moon pulls the ocean and makes the tide."),
          Doc("b", "Lava flows from a volcano during an eruption."),
          Doc("c", "A python is a large snake."), Doc("d", "Python code is read often."),
          Doc("e", "The ocean tide follows the moon.")]
TOY = Dataset("toy", CORPUS, [Query("1", "what causes the tide?"), Query("2", "lava volcano"),
                              Query("3", "large snake python"), Query("4", "python code")],
              {"1": {"a": 1, "e": 1}, "2": {"b": 1}, "3": {"c": 1, "d": 0}, "4": {"d": 1}})


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """Tiny models gain nothing from threads, and on a busy machine lose 10x to them."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def lm(attn: str = "eager", seed: int = 1):  # type: ignore[no-untyped-def]
    tiny = tiny_lm(seed=seed, attn_implementation=attn)
    return wrap_causal_lm(tiny.model, tiny.tokenizer, "tiny")


def test_attention_stop_mask_position_by_position() -> None:
    # row 0: prompt 4 ([E] at 3), query at 4-5; row 1: prompt 2 ([E] at 1), query 2-4, pad 5
    got = attention_stop_allowed([4, 2], [2, 3], 6).int().tolist()
    assert got == [[[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
                    [1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1]],
                   [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0],
                    [0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 1]]]
    plain = attention_stop_allowed([4, 2], [2, 3], 6, stop=False).int()
    assert plain[0].tolist() == torch.ones(6, 6).tril().int().tolist()
    assert plain[1, 4].tolist() == [1, 1, 1, 1, 1, 0] and plain[1, 5].tolist() == [0] * 5 + [1]
    add = additive_mask(attention_stop_allowed([4, 2], [2, 3], 6), torch.float32)
    assert add.shape == (2, 1, 6, 6) and add[1, 0, 2, 0] == torch.finfo(torch.float32).min
    assert add[1, 0, 2, 1] == 0.0


def test_query_tokens_give_documents_exactly_zero_attention() -> None:
    model = lm("eager").model
    # row 0: passage 0-4, [E] 5, query 6-7; row 1: passage 0-1, [E] 2, query 3-6, pad 7
    ids = torch.tensor([[20, 21, 22, 23, 24, 2, 40, 41], [30, 31, 2, 50, 51, 52, 53, 0]])
    for stop in (True, False):
        allowed = attention_stop_allowed([6, 3], [2, 4], 8, stop=stop)
        att = model.base_model(input_ids=ids, attention_mask=additive_mask(allowed, torch.float32),
                               position_ids=torch.arange(8).expand(2, -1),
                               output_attentions=True).attentions
        for layer in att:  # (batch, heads, query position, key position)
            doc0, doc1 = layer[0, :, 6:8, :5], layer[1, :, 3:7, :2]
            if stop:
                assert doc0.eq(0).all() and doc1.eq(0).all()
                assert (layer[0, :, 6:8, 5] > 0).all() and (layer[1, :, 3:7, 2] > 0).all()
            else:
                assert (doc0 > 0).all() and (doc1 > 0).all()
            assert layer[1, :, 7, :7].eq(0).all()  # the padding position sees only itself


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_ql_loss_of_a_padded_batch_is_the_token_mean_of_its_rows(attn: str) -> None:
    model = lm(attn).model
    prompts, queries = [[20, 21, 22, 23, 2], [30, 2]], [[40, 41, 42], [50]]
    with torch.no_grad():
        batch = ql_loss(model, prompts, queries, pad_id=0)
        alone = [ql_loss(model, [p], [q], pad_id=0) for p, q in zip(prompts, queries,
                                                                   strict=True)]
        # by hand for row 1: [E] at 1 predicts 50 from the states of 30 and [E]
        logits = model(input_ids=torch.tensor([[30, 2]])).logits[0, 1]
    assert batch.item() == pytest.approx((3 * alone[0].item() + alone[1].item()) / 4, rel=1e-5)
    want = -torch.log_softmax(logits, -1)[50].item()
    assert alone[1].item() == pytest.approx(want, rel=1e-5)


def test_input_corruption_rate_and_extremes() -> None:
    rng = np.random.default_rng(0)
    text = " ".join(f"w{i}" for i in range(20000))
    out = corrupt_words(text, 0.5, "<m>", rng).split(" ")
    assert len(out) == 20000 and abs(out.count("<m>") / 20000 - 0.5) < 0.015
    kept = [w for w in out if w != "<m>"]
    assert all(w.startswith("w") for w in kept)
    assert corrupt_words("a  b\nc", 0.0, "<m>", rng) == "a  b\nc"
    assert corrupt_words("a  b\nc ", 1.0, "<m>", rng) == "<m>  <m>\n<m> "
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        corrupt_words("a", 1.5, "<m>", rng)


def test_mask_token_is_one_token_other_than_end() -> None:
    tok = lm().tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert mask_token(tok, end) == "<|endoftext|>"
    masked = corrupt_words("the moon pulls the ocean", 1.0, "<|endoftext|>",
                           np.random.default_rng(0))
    assert tok(masked)["input_ids"].count(tok.pad_token_id) == 5
    with pytest.raises(PursuitError, match="no single-token mask for input corruption"):
        mask_token(tok, end, "<|im_end|>")


def test_pairs_negatives_and_batches() -> None:
    pairs = training_pairs(TOY)
    assert [(p.query_id, p.doc.id) for p in pairs] == [("1", "a"), ("1", "e"), ("2", "b"),
                                                        ("3", "c"), ("4", "d")]
    assert pairs[0].positives == frozenset({"a", "e"}) and pairs[3].positives == {"c"}
    negatives = mine_hard_negatives(pairs, CORPUS, depth=2)
    assert negatives["3"] == ["d"] and negatives["4"] == ["c"]  # BM25 on "python"
    assert all(not set(v) & next(p.positives for p in pairs if p.query_id == q)
               for q, v in negatives.items())
    first = [step_batch(5, 2, s, seed=0) for s in range(3)]
    assert sorted(sum(first, [])) == [0, 1, 2, 3, 4] and len(first[2]) == 1
    assert step_batch(5, 2, 3, seed=0) != first[0] or step_batch(5, 2, 4, seed=0) != first[1]
    assert lr_at(0, 10, 1.0, 0.2) == 0.5 and lr_at(1, 10, 1.0, 0.2) == 1.0
    assert lr_at(2, 10, 1.0, 0.2) == 1.0 and lr_at(9, 10, 1.0, 0.2) == pytest.approx(0.125)


def test_one_step_lowers_both_losses_on_a_fixed_batch() -> None:
    model = lm("sdpa").model
    prompts, queries = [[20, 21, 22, 23, 2], [30, 31, 2]], [[40, 41, 42], [50, 51]]
    opt = optimizer_for(model, lr=1e-3, weight_decay=0.0)
    model.train()
    before = optimizer_step(model, opt, ql_loss(model, prompts, queries, pad_id=0), lr=1e-3,
                            max_grad_norm=1.0)
    assert ql_loss(model, prompts, queries, pad_id=0).item() < before

    q_rows, d_rows = [[60, 61, 2], [62, 2]], [[20, 21, 2], [30, 2], [70, 71, 72, 2]]
    excluded = torch.tensor([[False, False, True], [False, False, False]])
    opt = optimizer_for(model, lr=1e-3, weight_decay=0.0)
    loss = contrastive_loss(model, q_rows, d_rows, [0, 1], excluded, pad_id=0)
    with torch.no_grad():  # the definition: cosine / t, excluded left out, CE on the target
        q, d = embed_rows(model, q_rows, pad_id=0), embed_rows(model, d_rows, pad_id=0)
        s = (q @ d.T) / 0.01
        want = (torch.logsumexp(s[0, :2], 0) - s[0, 0] + torch.logsumexp(s[1], 0) - s[1, 1]) / 2
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    before = optimizer_step(model, opt, loss, lr=1e-3, max_grad_norm=1.0)
    assert contrastive_loss(model, q_rows, d_rows, [0, 1], excluded, pad_id=0).item() < before


def test_lora_starts_at_the_base_model_and_merges_exactly() -> None:
    model = lm("sdpa").model
    ids = torch.tensor([[20, 21, 22, 2]])
    with torch.no_grad():
        base = model(input_ids=ids).logits
    assert apply_lora(model, rank=4, alpha=8) == 2 * 7
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(("lora_a", "lora_b")) for n in trainable)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base)  # B starts at zero
    opt = optimizer_for(model, lr=1e-2, weight_decay=0.0)
    optimizer_step(model, opt, ql_loss(model, [[20, 21, 2]], [[40, 41]], pad_id=0), lr=1e-2,
                   max_grad_norm=1.0)
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        assert merge_lora(model) == 14 and not any(isinstance(m, LoRALinear)
                                                   for m in model.modules())
        torch.testing.assert_close(model(input_ids=ids).logits, adapted, atol=1e-5, rtol=1e-5)
    assert not torch.equal(adapted, base)


CONFIG = LLMQLConfig(model="tiny", stage1_batch_size=2, stage2_batch_size=2, stage1_epochs=1,
                     stage2_epochs=2, hard_negatives=1, negative_depth=3, amp="none",
                     save_every=2, save_dtype="float32", stage1_lr=1e-3, stage2_lr=1e-3,
                     temperature=0.05)


def test_resumed_run_takes_exactly_the_uninterrupted_steps(tmp_path: Path) -> None:
    full = train_llmql(CONFIG, TOY, tmp_path / "full", lm=lm("sdpa"))
    assert full.finished and [len(full.losses["1"]), len(full.losses["2"])] == [3, 6]
    part = train_llmql(CONFIG, TOY, tmp_path / "part", lm=lm("sdpa"), stop_after=4)
    assert not part.finished and (part.stage, part.step) == (2, 1)
    assert (tmp_path / "part" / "latest").read_text() == "ckpt-s2-0000001\n"
    assert sorted(p.name for p in (tmp_path / "part").iterdir()) == [
        "ckpt-s2-0000001", "config.json", "latest", "negatives.json"]
    with pytest.raises(PursuitError, match=r"holds a run with other settings \(seed differ\)"):
        train_llmql(LLMQLConfig(**{**CONFIG.__dict__, "seed": 5}), TOY, tmp_path / "part")
    rest = train_llmql(CONFIG, TOY, tmp_path / "part", lm=lm("sdpa", seed=9))  # weights reload
    assert rest.losses == full.losses  # identical floats, step by step
    assert sorted(p.name for p in (tmp_path / "part").iterdir()) == [
        "config.json", "model", "negatives.json"]
    again = train_llmql(CONFIG, TOY, tmp_path / "part")  # finished: loads and trains nothing
    assert again.finished and again.losses == full.losses and again.step == 6
    meta = json.loads((tmp_path / "part" / "model" / "pursuit-llmql.json").read_text())
    assert meta["steps"] == {"1": 3, "2": 6} and meta["encoder"]["end_token"] == "<|im_end|>"
    a = LLMEncoder(str(tmp_path / "full" / "model"), dtype="float32", device="cpu")
    b = LLMEncoder(str(tmp_path / "part" / "model"), dtype="float32", device="cpu")
    texts = [d.contents() for d in CORPUS]
    assert np.array_equal(a.encode_document(texts), b.encode_document(texts))
    assert a.base_model == "tiny" and a.prompts["passage"] == CONFIG.passage_prompt


def test_stage2_settings_may_change_only_between_the_stages(tmp_path: Path) -> None:
    run = tmp_path / "run"
    part = train_llmql(CONFIG, TOY, run, lm=lm("sdpa"), stop_after=3)  # all of stage 1
    assert (part.stage, part.step) == (2, 0)
    assert (run / "latest").read_text() == "ckpt-s2-0000000\n"
    changed = LLMQLConfig(**{**CONFIG.__dict__, "hard_negatives": 0, "stage2_lr": 5e-4})
    with pytest.raises(PursuitError,
                       match=r"\(hard_negatives, seed, stage2_lr differ\); rerun with the same"):
        train_llmql(LLMQLConfig(**{**changed.__dict__, "seed": 5}), TOY, run)
    done = train_llmql(changed, TOY, run, lm=lm("sdpa"), stop_after=1)
    assert (done.stage, done.step) == (2, 1)
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["hard_negatives"] == 0 and recorded["stage2_lr"] == 5e-4
    assert recorded["stage2_changes"] == [{
        "hard_negatives": {"was": CONFIG.hard_negatives, "now": 0},
        "stage2_lr": {"was": CONFIG.stage2_lr, "now": 5e-4}}]
    with pytest.raises(PursuitError, match=r"\(temperature differ\); stage-2 settings .* may "
                                           r"change only between the stages"):
        train_llmql(LLMQLConfig(**{**changed.__dict__, "temperature": 0.5}), TOY, run)
    rest = train_llmql(changed, TOY, run, lm=lm("sdpa"))  # the recorded settings resume
    assert rest.finished and len(rest.losses["1"]) == 3


@pytest.mark.data
def test_scifact_train_split_gives_919_pairs(shared_data: Path) -> None:
    pairs = training_pairs(read_beir(shared_data / "beir-scifact", "train"))
    assert len(pairs) == 919 and len({p.query_id for p in pairs}) == 809
    assert (pairs[0].query_id, pairs[0].doc.id) == ("0", "31715818")


def test_cli_trains_resumes_and_refuses_other_settings(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pursuit.indexes.datasets.beir import write_beir
    from pursuit.ui.cli import app as cli

    write_beir(TOY, tmp_path / "toy", split="train")
    tiny = lm("sdpa")
    tiny.model.save_pretrained(tmp_path / "tiny")
    tiny.tokenizer.save_pretrained(tmp_path / "tiny")
    argv = ["train", "llm-ql", str(tmp_path / "toy"), "--out", str(tmp_path / "run"), "--model",
            str(tmp_path / "tiny"), "--max-steps", "2", "--stage1-batch-size", "2", "--stage2-batch-size", "2",
            "--device", "cpu", "--amp", "none", "--json"]

    def run(args: list[str]) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.argv", ["pursuit", *args])
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run([*argv, "--stop-after", "3"])
    assert code == 0 and json.loads(out)["finished"] is False
    assert (json.loads(out)["stage"], json.loads(out)["step"]) == (2, 1)
    code, out, _ = run(argv)
    summary = json.loads(out)
    assert code == 0 and summary["finished"] and summary["model_dir"] == str(tmp_path / "run" /
                                                                              "model")
    meta = json.loads((tmp_path / "run" / "model" / "pursuit-llmql.json").read_text())
    assert meta["command"].startswith("pursuit train llm-ql ") and meta["steps"] == {"1": 2,
                                                                                    "2": 2}
    assert meta["encoder"]["base_model"] == str(tmp_path / "tiny") and meta["pairs"] == 5
    code, _, err = run([*argv[:-1], "--seed", "3"])
    assert code == 1 and "holds a run with other settings (seed differ)" in err
    code, _, err = run([*argv[:-1], "--stages", "2,1"])
    assert code == 1 and "stages must be (1, 2), (1,) or (2,), got (2, 1)" in err
