"""LLM-QL training data: (query, positive passage) pairs, input corruption, hard negatives.

* :func:`training_pairs` turns a BEIR split into one pair per relevant (query, document).
* :func:`corrupt_words` is LLM-QL's *Input Corruption*: each whitespace-separated word of a
  passage becomes the mask token with probability ``p`` (independently), so the passage's
  ``[E]`` state has to carry meaning rather than copy words.
* :func:`mine_hard_negatives` ranks the training corpus with BM25 for every query and keeps
  the top documents that are not among the query's positives.
* :func:`epoch_order` is the seeded order of the pairs in one epoch.

Example:
    >>> pairs = training_pairs(read_beir("../shared/data/beir-scifact", "train"))  # doctest: +SKIP
    >>> corrupt_words("a b c d", 1.0, "<m>", np.random.default_rng(0))
    '<m> <m> <m> <m>'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pursuit.indexes.bm25 import BM25Index
from pursuit.indexes.datasets.beir import Dataset
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class TrainPair:
    """One query with one of its relevant documents.

    Attributes:
        query_id: The query's id.
        query: The query text.
        doc: The relevant document.
        positives: Ids of every document relevant to the query (never used as negatives).
    """

    query_id: str
    query: str
    doc: Doc
    positives: frozenset[str]


def training_pairs(dataset: Dataset) -> list[TrainPair]:
    """One pair per (query, document) with relevance > 0, in query then qrels order.

    Raises:
        PursuitError: a judged document is missing from the corpus, or no pair exists.
    """
    docs = {d.id: d for d in dataset.corpus}
    pairs: list[TrainPair] = []
    for query in dataset.queries:
        judged = dataset.qrels.get(query.id, {})
        positives = frozenset(d for d, rel in judged.items() if rel > 0)
        for doc_id in (d for d in judged if d in positives):
            if doc_id not in docs:
                raise PursuitError(f"query {query.id} is judged relevant to document {doc_id}, "
                                   f"which the corpus of {dataset.name} lacks")
            pairs.append(TrainPair(query.id, query.text, docs[doc_id], positives))
    if not pairs:
        raise PursuitError(f"{dataset.name} has no relevant (query, document) pair to train on")
    return pairs


def corrupt_words(text: str, p: float, mask: str, rng: np.random.Generator) -> str:
    """Replace each word of ``text`` by ``mask`` with probability ``p``; whitespace is kept.

    Args:
        text: The passage.
        p: Probability per word, in ``[0, 1]``; 0 returns ``text`` unchanged.
        mask: The replacement, a string the tokenizer reads as one special token.
        rng: Source of randomness (seeded per training step, so a resumed run repeats it).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"corruption probability must be in [0, 1], got {p}")
    if p == 0.0:
        return text
    words = list(_WORD.finditer(text))
    hit = rng.random(len(words)) < p
    out, last = [], 0
    for word, replace in zip(words, hit, strict=True):
        out.append(text[last:word.start()])
        out.append(mask if replace else word.group())
        last = word.end()
    out.append(text[last:])
    return "".join(out)


def mask_token(tokenizer: Any, end_id: int, choice: str | None = None) -> str:
    """The token corrupted words become: ``choice``, else the tokenizer's mask, unknown or
    padding token, the first that is one token and not the end token ``[E]``.

    Raises:
        PursuitError: none qualifies; pass ``mask_token=`` naming a special token.
    """
    candidates = [choice] if choice is not None else [
        getattr(tokenizer, name, None) for name in ("mask_token", "unk_token", "pad_token")]
    for token in candidates:
        if token is None:
            continue
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] != end_id:
            return str(token)
    raise PursuitError(f"no single-token mask for input corruption among {candidates}: pass "
                       "mask_token= (--mask-token) naming a special token other than [E]")


def mine_hard_negatives(pairs: Sequence[TrainPair], corpus: Sequence[Doc], *,
                        depth: int = 30) -> dict[str, list[str]]:
    """Query id -> the BM25 top documents of the corpus that are not its positives.

    Args:
        pairs: Training pairs (each distinct query is searched once).
        corpus: The training corpus.
        depth: How many BM25 results to search per query before removing the positives.
    """
    queries: dict[str, TrainPair] = {}
    for pair in pairs:
        queries.setdefault(pair.query_id, pair)
    index = BM25Index.build([d.contents() for d in corpus], np.arange(len(corpus)))
    ids = list(queries)
    rows, _ = index.search([queries[q].query for q in ids], depth + max(
        len(queries[q].positives) for q in ids))
    out: dict[str, list[str]] = {}
    for qid, found in zip(ids, rows, strict=True):
        negatives = [corpus[r].id for r in found if r >= 0]
        out[qid] = [d for d in negatives if d not in queries[qid].positives][:depth]
    return out


def epoch_order(n: int, *, seed: int, epoch: int) -> list[int]:
    """The seeded permutation of ``n`` pairs visited in ``epoch``."""
    return np.random.default_rng([seed, 7, epoch]).permutation(n).tolist()


def step_batch(n: int, batch_size: int, step: int, *, seed: int) -> list[int]:
    """Indices of the pairs of optimisation ``step`` (epochs follow each other, seeded).

    Each epoch is ``ceil(n / batch_size)`` steps; its last batch may be smaller.
    """
    per_epoch = -(-n // batch_size)
    epoch, i = divmod(step, per_epoch)
    return epoch_order(n, seed=seed, epoch=epoch)[i * batch_size:(i + 1) * batch_size]
