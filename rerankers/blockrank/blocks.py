"""BlockRank's prompt as blocks: token ids, permutation-invariant positions, the sparse mask.

A BlockRank prompt (``docs/methods.md`` §2) is cut into blocks that are tokenised separately:

* block 0, the instruction: chat prefix, task description, ``"Documents:"`` — never the
  query, so that a document block's keys and values depend only on (model, instruction,
  document) and can be cached across queries;
* blocks 1..N, one per document: ``ID: {label} | CONTENT: {title text} | END ID: {label}``,
  shortened to a token budget (the document text is cut, never the wrapper);
* block N+1, the query and the answer prefix, ending in ``Final Answer: [``; the signal
  tokens whose attention scores the documents are the query text's own tokens (zero-shot)
  or the last tokens of the answer prefix (the paper's choice after fine-tuning).

Positions: block 0 takes ``0..l0-1``, every document block restarts at ``l0``, and the
query block starts after the longest document, so a document's states never depend on its
slot. Attention: block 0 is causal, a document sees block 0 and itself causally, the query
block sees everything before it and itself causally.

The label of a document is its own id, not its slot number: a slot number would make the
tokens (and so the scores and the cache key) depend on the order of the candidates.

Example:
    >>> layout = build_layout(lm, "what causes tides?", docs, max_doc_tokens=384)  # doctest: +SKIP
    >>> layout.flat_positions()[:5]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc
from pursuit.rerankers.prompting import truncate_tokens

TASK = ("You will be given a query and a list of documents, each between ID and END ID. "
        "Find the document that best answers the query.\nDocuments:\n")
ASK_HEAD = "Query:"
ASK_TAIL = "\nWhich document is most relevant to the query? Answer with its ID."
#: Which query-block tokens score documents: the query text's own tokens (the default;
#: measured far better zero-shot, BENCHMARKS.md) or the last tokens of the answer prefix
#: (the paper's choice, for fine-tuned models).
SIGNALS = ("query", "answer")
ANSWER = "Final Answer: ["


@dataclass(frozen=True)
class BlockLayout:
    """The token ids of every block of one BlockRank prompt.

    Attributes:
        instruction: Block 0.
        docs: One tuple of ids per document block, in the caller's document order.
        query: The last block (query, question, chat suffix, answer prefix) plus any
            answer tokens appended for training.
        signal: Indices into ``query`` of the tokens whose attention scores documents.
        gap: Extra positions left between the longest document and the query block.
    """

    instruction: tuple[int, ...]
    docs: tuple[tuple[int, ...], ...]
    query: tuple[int, ...]
    signal: tuple[int, ...]
    gap: int = 0

    @property
    def l0(self) -> int:
        """Length of the instruction block."""
        return len(self.instruction)

    @property
    def max_doc(self) -> int:
        """Length of the longest document block (0 without documents)."""
        return max((len(d) for d in self.docs), default=0)

    @property
    def query_start(self) -> int:
        """Position id of the first query-block token: after the longest document."""
        return self.l0 + self.max_doc + self.gap

    def flat_ids(self) -> list[int]:
        """All ids in prompt order: instruction, documents, query."""
        out = list(self.instruction)
        for d in self.docs:
            out.extend(d)
        return out + list(self.query)

    def segments(self) -> list[int]:
        """Block number of every token in :meth:`flat_ids` order (0, 1..N, N+1)."""
        out = [0] * self.l0
        for i, d in enumerate(self.docs, start=1):
            out.extend([i] * len(d))
        return out + [len(self.docs) + 1] * len(self.query)

    def flat_positions(self) -> list[int]:
        """Position id of every token in :meth:`flat_ids` order."""
        out = list(range(self.l0))
        for d in self.docs:
            out.extend(range(self.l0, self.l0 + len(d)))
        return out + list(range(self.query_start, self.query_start + len(self.query)))

    def dense_mask(self) -> torch.Tensor:
        """The ``T x T`` boolean attention mask (True = may attend) of the whole prompt."""
        seg = torch.tensor(self.segments())
        n = seg.numel()
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        last = len(self.docs) + 1
        same = seg[:, None] == seg[None, :]
        sees = same | (seg[None, :] == 0) | (seg[:, None] == last)
        return causal & sees


def doc_content(doc: Doc) -> str:
    """A document's title and text on one line, whitespace collapsed."""
    return " ".join(f"{doc.title} {doc.text}".split())


def doc_block_ids(tokenizer: Any, label: str, content: str, max_tokens: int | None) -> list[int]:
    """Token ids of one document block, at most ``max_tokens`` long; only ``content`` is cut.

    Raises:
        PursuitError: the wrapper alone (``ID: label | CONTENT:  | END ID: label``) is longer
            than the budget.
    """
    head, tail = f"ID: {label} | CONTENT: ", f" | END ID: {label}\n"

    def encode(text: str) -> list[int]:
        return list(tokenizer(head + text + tail, add_special_tokens=False)["input_ids"])

    ids = encode(content)
    if max_tokens is None or len(ids) <= max_tokens:
        return ids
    keep = max_tokens - len(encode(""))
    while keep >= 0:
        ids = encode(truncate_tokens(tokenizer, content, keep).rstrip())
        if len(ids) <= max_tokens:
            return ids
        keep -= len(ids) - max_tokens  # merges across the cut cost a token or two
    raise PursuitError(f"max_doc_tokens={max_tokens} leaves no room for the text of document "
                       f"{label!r}: its block wrapper alone is {len(encode(''))} tokens; raise "
                       "max_doc_tokens")


def instruction_text(lm: Any) -> tuple[str, str]:
    """The text of block 0 and the chat suffix that ends the user turn.

    Uses the model's chat template when it has one (``lm.chat_prompt``), plain text if not.
    """
    try:
        prefix, suffix = lm.chat_prompt("\x01")
    except (PursuitError, AttributeError):
        prefix, suffix = "", "\n"
    return prefix + TASK, suffix


def check_signal(signal: str) -> None:
    """Refuse a signal choice that is not one of :data:`SIGNALS`."""
    if signal not in SIGNALS:
        raise PursuitError(f"signal={signal!r} is not one of {', '.join(SIGNALS)}")


def build_layout(lm: Any, query: str, docs: Sequence[Doc], *, max_doc_tokens: int | None = 384,
                 signal: str = "query", signal_tokens: int = 1, answer: str | None = None,
                 gap: int = 0) -> BlockLayout:
    """Tokenise a BlockRank prompt into blocks.

    Args:
        lm: A :class:`~pursuit.retrievers.lm.causal.CausalLM` (``.tokenizer``, ``.chat_prompt``).
        query: The query text; never shortened.
        docs: The candidate documents; each block is labelled with the document's id.
        max_doc_tokens: Token budget of one document block (``None``: no limit).
        signal: ``"query"``: the query text's tokens score documents; ``"answer"``: the
            last ``signal_tokens`` tokens of the prompt do.
        signal_tokens: How many tokens at the end of the prompt score documents
            (``signal="answer"`` only).
        answer: Answer text appended after ``Final Answer: [`` (training only); the signal
            tokens stay within the prompt proper.
        gap: Extra positions between the longest document and the query block.

    Example:
        >>> build_layout(lm, "tides", [Doc("d1", "The moon pulls the sea.")]).l0  # doctest: +SKIP
    """
    check_signal(signal)
    if signal_tokens < 1:
        raise ValueError(f"signal_tokens must be >= 1, got {signal_tokens}")
    tok = lm.tokenizer

    def encode(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    head, suffix = instruction_text(lm)
    instruction = tuple(encode(head))
    blocks = tuple(tuple(doc_block_ids(tok, d.id, doc_content(d), max_doc_tokens)) for d in docs)
    # Tokenised in pieces, so the query text's own tokens are known exactly.
    lead, asked = encode(ASK_HEAD), encode(" " + " ".join(query.split()))
    prompt = lead + asked + encode(ASK_TAIL + suffix + ANSWER)
    n = len(prompt)
    if signal == "query":
        picked = tuple(range(len(lead), len(lead) + len(asked)))
    else:
        if signal_tokens > n:
            raise ValueError(f"signal_tokens={signal_tokens} exceeds the query block ({n} tokens)")
        picked = tuple(range(n - signal_tokens, n))
    if not picked:
        raise PursuitError("the query is empty: BlockRank needs query text to score documents")
    if answer is not None:
        prompt += encode(answer)
    return BlockLayout(instruction, blocks, tuple(prompt), picked, gap)
