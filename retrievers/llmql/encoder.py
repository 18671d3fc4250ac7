"""A causal LM as a bi-encoder: the hidden state of an end token after a prompt.

A passage is encoded as ``passage_prompt`` with the text in place of ``{text}``, followed by
one end token ``[E]`` (the tokenizer's end-of-sequence token unless told otherwise); a query
the same way with ``query_prompt``. The vector is the final layer's (normed) hidden state at
each sequence's own ``[E]`` position (``pooling="end"``), or the mean over its tokens
(``pooling="mean"``), L2-normalised. This is the embedding LLM-QL trains
(:mod:`pursuit.retrievers.llmql.training`, ``docs/methods.md`` §3), and a trained checkpoint folder
carries its prompts in ``pursuit-llmql.json``, which this encoder reads.

Rows of a batch are padded, and each row's ``[E]`` is found from its attention mask, so the
padding side never matters and a padded batch encodes like each text alone.

Example:
    >>> enc = LLMEncoder("qwen2.5-coder-0.5b")                     # doctest: +SKIP
    >>> index = SearchIndex.build(docs, "idx", source="x", encoder=enc)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.lm.causal import CausalLM, canonical_llm_id, shared_causal_lm
from pursuit.retrievers.lm.dtypes import cpu_flags

#: Where the passage text goes; the prompt ends right before ``[E]``.
PASSAGE_PROMPT = "Passage: {text}\nWrite a question this passage answers."
#: After LLM-QL's stage 1 a passage's ``[E]`` predicts its query; asking the query's ``[E]``
#: to predict the query itself puts both in the same place of the model's state space.
QUERY_PROMPT = "Question: {text}\nRepeat this question."
POOLINGS = ("end", "mean")
#: The file a trained checkpoint folder records its encoder settings in.
METADATA_FILE = "pursuit-llmql.json"


def check_template(template: str, role: str) -> str:
    """Return ``template`` if it holds ``{text}`` exactly once, else raise naming the role."""
    if template.count("{text}") != 1:
        raise PursuitError(f"the {role} prompt must contain '{{text}}' exactly once, got "
                           f"{template!r}")
    return template


def end_token_id(tokenizer: Any, end_token: str | None) -> int:
    """The id of ``end_token`` (``None``: the tokenizer's end-of-sequence token).

    Raises:
        PursuitError: the token is not a single token of this tokenizer.
    """
    token = end_token if end_token is not None else tokenizer.eos_token
    if token is None:
        raise PursuitError("the tokenizer has no end-of-sequence token; pass end_token=")
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise PursuitError(f"end_token {token!r} is {len(ids)} tokens for this tokenizer, not "
                           "one; pass a special token of the tokenizer as end_token")
    return int(ids[0])


def truncate_text(tokenizer: Any, text: str, max_tokens: int) -> str:
    """``text`` cut after its first ``max_tokens`` tokens (at a character offset)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return text
    return text[:enc["offset_mapping"][max_tokens - 1][1]]


def prompt_ids(tokenizer: Any, template: str, text: str, *, max_tokens: int,
               end_id: int) -> list[int]:
    """Token ids of ``template`` around ``text`` (cut to ``max_tokens``), then ``[E]``."""
    filled = template.replace("{text}", truncate_text(tokenizer, text, max_tokens))
    return [*tokenizer(filled, add_special_tokens=False)["input_ids"], end_id]


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, *, side: str = "right",
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids padded to one length: ``(input_ids, attention_mask)``, int64."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span] = torch.tensor(list(row), dtype=torch.long)
        mask[i, span] = 1
    return ids.to(device), mask.to(device)


def last_positions(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, whatever side the padding is on."""
    width = mask.shape[1]
    return width - 1 - mask.flip(1).argmax(1)


def embed_rows(model: Any, rows: Sequence[Sequence[int]], *, pad_id: int, pooling: str = "end",
               padding_side: str = "right") -> torch.Tensor:
    """L2-normalised float32 embeddings of token rows (differentiable; no ``no_grad`` here).

    Args:
        model: A transformers causal LM; its decoder (``model.base_model``) is run.
        rows: Token ids, each ending with ``[E]``.
        pad_id: Padding id (masked out, so its value does not matter).
        pooling: ``"end"`` (the state at each row's last real token) or ``"mean"``.
        padding_side: ``"right"`` or ``"left"``; both give the same vectors.
    """
    device = next(model.parameters()).device
    ids, mask = pad_rows(rows, pad_id, side=padding_side, device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # each row counts from its first token
    hidden = model.base_model(input_ids=ids, attention_mask=mask, position_ids=positions,
                              use_cache=False).last_hidden_state
    if pooling == "end":
        pooled = hidden[torch.arange(len(rows), device=device), last_positions(mask)].float()
    elif pooling == "mean":
        weights = mask.unsqueeze(-1).float()
        pooled = (hidden.float() * weights).sum(1) / weights.sum(1)
    else:
        raise PursuitError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    return F.normalize(pooled, dim=-1)


def read_metadata(model: str) -> dict[str, Any]:
    """The ``pursuit-llmql.json`` of a local checkpoint folder, or ``{}``."""
    path = Path(model).expanduser() / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


class LLMEncoder:
    """A causal LM behind the :class:`~pursuit.indexes.protocols.Encoder` protocol.

    Args:
        model: A packaged name (``"qwen2.5-coder-0.5b"``, ``"smollm2-135m"``, ...), hub id,
            local folder (e.g. the ``model/`` folder ``pursuit train llm-ql`` writes), or an
            already loaded :class:`~pursuit.retrievers.lm.causal.CausalLM`.
        passage_prompt, query_prompt: Templates with ``{text}``; default: the checkpoint's
            recorded prompts, else :data:`PASSAGE_PROMPT` / :data:`QUERY_PROMPT`.
        pooling: ``"end"`` (the ``[E]`` state) or ``"mean"``; default: recorded, else end.
        end_token: The ``[E]`` token; default: recorded, else the tokenizer's eos token.
        max_doc_tokens, max_query_tokens: Texts are cut to this many tokens (the prompt
            around them never is); default: recorded, else 512 and 64.
        batch_size: Texts per forward pass (sorted by length, so little padding).
        dtype, device, cache_dir: As for :func:`~pursuit.retrievers.lm.causal.load_causal_lm`.
        padding_side: ``"right"`` (default) or ``"left"``; the vectors are the same.

    Example:
        >>> enc = LLMEncoder("runs/llmql/model")  # doctest: +SKIP
        >>> enc.encode_query(["what causes tides?"]).shape  # doctest: +SKIP
        (1, 896)
    """

    similarity = "cosine"

    def __init__(self, model: str | CausalLM | None = None, *, passage_prompt: str | None = None,
                 query_prompt: str | None = None, pooling: str | None = None,
                 end_token: str | None = None, max_doc_tokens: int | None = None,
                 max_query_tokens: int | None = None, batch_size: int = 16,
                 dtype: str = "auto", device: str = "auto",
                 cache_dir: str | Path | None = None, padding_side: str = "right") -> None:
        if isinstance(model, CausalLM):
            self.lm, recorded = model, {}
        else:
            recorded = read_metadata(canonical_llm_id(model)).get("encoder", {})
            self.lm = shared_causal_lm(model, dtype=dtype, device=device, cache_dir=cache_dir)
        self.model_id = self.lm.model_id
        local = Path(self.model_id)
        self.checkpoint = str(local) if local.is_absolute() and local.exists() else None
        prompts = recorded.get("prompts", {})
        self.prompts = {
            "passage": check_template(passage_prompt or prompts.get("passage", PASSAGE_PROMPT),
                                      "passage"),
            "query": check_template(query_prompt or prompts.get("query", QUERY_PROMPT), "query")}
        self.pooling = pooling or recorded.get("pooling", "end")
        if self.pooling not in POOLINGS:
            raise PursuitError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.end_token = end_token or recorded.get("end_token") or self.lm.tokenizer.eos_token
        self.end_id = end_token_id(self.lm.tokenizer, self.end_token)
        self.max_doc_tokens = int(max_doc_tokens or recorded.get("max_doc_tokens", 512))
        self.max_query_tokens = int(max_query_tokens or recorded.get("max_query_tokens", 64))
        if min(self.max_doc_tokens, self.max_query_tokens, batch_size) < 1:
            raise ValueError(f"max_doc_tokens, max_query_tokens and batch_size must be >= 1, got "
                             f"{self.max_doc_tokens}, {self.max_query_tokens} and {batch_size}")
        self.batch_size, self.padding_side = batch_size, padding_side
        pad = self.lm.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.end_id)
        self.dim = int(self.lm.model.config.hidden_size)
        self.base_model = recorded.get("base_model")

    def rows(self, texts: Sequence[str], role: str) -> list[list[int]]:
        """The token rows of ``texts`` as queries (``role="query"``) or passages."""
        limit = self.max_query_tokens if role == "query" else self.max_doc_tokens
        template = self.prompts["query" if role == "query" else "passage"]
        return [prompt_ids(self.lm.tokenizer, template, t, max_tokens=limit, end_id=self.end_id)
                for t in texts]

    @torch.inference_mode()
    def _encode(self, texts: Sequence[str], role: str, show_progress: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        rows = self.rows(texts, role)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        from rich.progress import Progress

        with Progress(disable=not show_progress, transient=True) as bar:
            task = bar.add_task(f"encoding {role}s", total=len(rows))
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                vectors = embed_rows(self.lm.model, [rows[i] for i in chunk], pad_id=self.pad_id,
                                     pooling=self.pooling, padding_side=self.padding_side)
                out[chunk] = vectors.cpu().numpy()
                bar.advance(task, len(chunk))
        return out

    def encode_query(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode queries into float32 ``(len(texts), dim)``, L2-normalised."""
        return self._encode(texts, "query", show_progress)

    def encode_document(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode passages into float32 ``(len(texts), dim)``, L2-normalised."""
        return self._encode(texts, "passage", show_progress)

    def describe(self) -> Mapping[str, Any]:
        """What an index manifest records; :meth:`from_config` rebuilds the encoder from it."""
        return {"kind": "causal-lm", "model_id": self.model_id, "checkpoint": self.checkpoint,
                "base_model": self.base_model, "dim": self.dim, "similarity": self.similarity,
                "normalize": True, "pooling": self.pooling, "prompts": dict(self.prompts),
                "end_token": self.end_token, "max_doc_tokens": self.max_doc_tokens,
                "max_query_tokens": self.max_query_tokens,
                "dtype": str(self.lm.dtype).removeprefix("torch."),
                "cpu_flags": cpu_flags() if self.lm.device.type == "cpu" else []}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, dtype: str = "auto", device: str = "auto",
                    cache_dir: str | Path | None = None) -> LLMEncoder:
        """The encoder a manifest's ``describe()`` record names (same model, prompts, pooling).

        The recorded ``dtype`` says what the index's vectors were computed in; queries are
        encoded in ``dtype`` (``"auto"``: what this machine computes fastest), as for the
        sentence encoder: a bf16 index stays searchable on a CPU that emulates bf16.

        Raises:
            PursuitError: the model loads but makes vectors of another dimension.
        """
        encoder = cls(config["model_id"], passage_prompt=config["prompts"]["passage"],
                      query_prompt=config["prompts"]["query"], pooling=config["pooling"],
                      end_token=config["end_token"], max_doc_tokens=config["max_doc_tokens"],
                      max_query_tokens=config["max_query_tokens"], dtype=dtype,
                      device=device, cache_dir=cache_dir)
        if encoder.dim != config["dim"]:
            raise PursuitError(f"{config['model_id']} now makes {encoder.dim}-d vectors but the "
                               f"index holds {config['dim']}-d ones; the checkpoint changed, so "
                               "rebuild the index with it")
        return encoder

    def __repr__(self) -> str:
        return f"LLMEncoder({self.model_id!r}, dim={self.dim}, pooling={self.pooling!r})"
