"""Prompt segments, exact token spans, and truncation that never touches the query."""

from __future__ import annotations

import pytest
from tiny_lm import tiny_tokenizer
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from pursuit.rerankers.prompting import (
    INSTRUCTIONS,
    build_icr_prompt,
    tokenise_segments,
    truncate_tokens,
    truncate_words,
)

CHAT = ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n")
# Qwen2's pre-tokenizer splits ".\n\n" as one piece: punctuation swallows the newlines after it.
QWEN_LIKE_SPLIT = r"\s*[\r\n]+| ?[^\s\p{L}\p{N}]+[\r\n]*| ?\p{L}+| ?\p{N}+|\s+(?!\S)|\s+"


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def merging_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE that, like Qwen's, merges a final full stop with the blank line."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_LIKE_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["The moon pulls the ocean.\n\nLava flows.\n\nPlease find it."] * 5,
                            trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_truncate_words_keeps_spacing_and_stops_at_the_budget() -> None:
    assert truncate_words("a  b\nc d", 3) == "a  b\nc"
    assert truncate_words("a b", 5) == "a b"
    assert truncate_words("a b", None) == "a b"
    assert truncate_words("a b", 0) == ""
    with pytest.raises(ValueError, match="max_words must be >= 0, got -1"):
        truncate_words("a", -1)


def test_truncate_tokens_cuts_at_a_token_boundary(tokenizer: PreTrainedTokenizerFast) -> None:
    text = "The moon pulls the ocean and makes the tide."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    cut = truncate_tokens(tokenizer, text, 4)
    assert tokenizer(cut, add_special_tokens=False)["input_ids"] == ids[:4]
    assert text.startswith(cut) and len(cut) < len(text)
    assert truncate_tokens(tokenizer, text, len(ids)) == text
    assert truncate_tokens(tokenizer, text, None) == text


def test_every_segment_span_decodes_to_its_text(tokenizer: PreTrainedTokenizerFast) -> None:
    segments = [("head", "Here are some paragraphs:\n\n"), ("d0", "[1] The moon pulls."),
                ("sep", "\n\n"), ("d1", "[2] Lava flows from a volcano."), ("q", "\nQuery: tides?")]
    prompt = tokenise_segments(tokenizer, segments)
    assert prompt.text == "".join(text for _, text in segments)
    for name, text in segments:
        start, end = prompt.spans[name]
        assert prompt.span_text(name) == text
        assert tokenizer.decode(list(prompt.input_ids[start:end])) == text
    bounds = [prompt.spans[name] for name, _ in segments]
    assert bounds[0][0] == 0 and bounds[-1][1] == len(prompt.input_ids)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


def test_punctuation_merged_with_the_blank_line_stays_with_its_document(
        merging_tokenizer: PreTrainedTokenizerFast) -> None:
    doc, sep = "The moon pulls the ocean.", "\n\n"
    prompt = tokenise_segments(merging_tokenizer,
                               [("doc", doc), ("sep", sep), ("query", "Please find it.")])
    start, end = prompt.spans["doc"]
    # The document's last token is ".\n\n": it starts in the document, so it is the document's,
    # and the separator owns no token of its own.
    assert merging_tokenizer.decode([prompt.input_ids[end - 1]]) == ".\n\n"
    assert prompt.span_text("doc") == doc + sep
    assert prompt.spans["sep"] == (end, end)
    assert prompt.span_text("query") == "Please find it."
    # Tokenising piece by piece gives other tokens: why the whole prompt is tokenised once.
    alone = merging_tokenizer(doc, add_special_tokens=False)["input_ids"]
    assert list(prompt.input_ids[start:end]) != alone


def test_segment_names_must_be_unique(tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(ValueError, match=r"segment names must be unique, got \['a', 'a'\]"):
        tokenise_segments(tokenizer, [("a", "x"), ("a", "y")])


def test_icr_prompt_layout_and_spans(merging_tokenizer: PreTrainedTokenizerFast) -> None:
    prompt = build_icr_prompt(merging_tokenizer, ["The moon pulls.", "Lava flows."], "tides?",
                              instruction="Please find it.", chat=("<s>", "</s>"))
    assert prompt.prompt.text == ("<s>Here are some paragraphs:\n\n[1] The moon pulls.\n\n"
                                  "[2] Lava flows.\n\nPlease find it.\n\nQuery: tides?</s>")
    tok = prompt.prompt
    texts = [tok.text[tok.offsets[a][0]:tok.offsets[b - 1][1]] for a, b in prompt.doc_spans]
    assert texts == ["[1] The moon pulls.\n\n", "[2] Lava flows.\n\n"]
    assert prompt.query_start == prompt.doc_spans[-1][1]
    assert merging_tokenizer.decode(list(prompt.query_ids)) == "Please find it.\n\nQuery: tides?</s>"
    assert prompt.prefix_ids + prompt.query_ids == tok.input_ids


def test_the_documents_prefix_does_not_depend_on_the_query(
        tokenizer: PreTrainedTokenizerFast) -> None:
    docs = ["The moon pulls the ocean.", "Lava flows."]
    a = build_icr_prompt(tokenizer, docs, "what causes tides?", chat=CHAT)
    b = build_icr_prompt(tokenizer, docs, "N/A", chat=CHAT)
    assert a.prefix_ids == b.prefix_ids and a.doc_spans == b.doc_spans
    assert a.query_ids != b.query_ids


def test_truncation_shortens_documents_and_keeps_the_whole_query(
        tokenizer: PreTrainedTokenizerFast) -> None:
    long_doc = " ".join(["moon"] * 500)
    query = " ".join(["what causes the tide"] * 40)  # 160 words: longer than any doc budget
    prompt = build_icr_prompt(tokenizer, [truncate_words(long_doc, 300)], query, chat=CHAT)
    assert prompt.prompt.span_text("doc0").split() == ["[1]"] + ["moon"] * 300
    assert tokenizer.decode(list(prompt.query_ids)) == (
        f"{INSTRUCTIONS['retrieval']}\n\nQuery: {query}{CHAT[1]}")
