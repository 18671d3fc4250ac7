"""A tiny random-weight causal LM and a tokenizer trained on the spot, for exact unit tests.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a few sentences, the
model a 2-layer Qwen2 (grouped-query attention, like the packaged models) with seeded
random weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

CORPUS = [
    "The moon pulls the ocean and makes the tide.",
    "Lava flows from a volcano during an eruption.",
    "A python is a large snake; Python code is read often.",
    "Here are some paragraphs: Please find information that is relevant to the query.",
    "Query: what causes tides? Answer: N/A. Document [1] [2] [3] ID: | CONTENT: END ID:",
    "system user assistant You are a helpful assistant. Final Answer: [",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with a chat template, trained on :data:`CORPUS`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


@dataclass
class TinyLM:
    """A model and its tokenizer."""

    model: Qwen2ForCausalLM
    tokenizer: PreTrainedTokenizerFast


def tiny_lm(*, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
            seed: int = 0, dtype: torch.dtype = torch.float32,
            attn_implementation: str = "eager") -> TinyLM:
    """A seeded random-weight Qwen2 causal LM (GQA) with :func:`tiny_tokenizer`."""
    tokenizer = tiny_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, max_position_embeddings=4096,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(dtype).eval()
    return TinyLM(model, tokenizer)
