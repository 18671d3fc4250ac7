"""One LLM-QL run's model and batches: loading, LoRA, the loss of a step, saving the result.

:class:`Run` holds what the loop in :func:`pursuit.retrievers.llmql.training.train_llmql` needs
besides the optimizer: the model in float32 (packaged GGUF weights are loaded from the
conversion cache of the dtype ``"auto"`` picks and widened: they were 4-bit, so nothing is
lost), the token ids of ``[E]``, padding and the corruption mask, and the loss of a step
computed from ``(seed, stage, step)`` alone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pursuit.retrievers.llmql.data import TrainPair, corrupt_words, mask_token, step_batch
from pursuit.retrievers.llmql.encoder import METADATA_FILE, end_token_id, prompt_ids
from pursuit.retrievers.llmql.lora import apply_lora, merge_lora
from pursuit.retrievers.llmql.loss import contrastive_loss, ql_loss
from pursuit.retrievers.lm.causal import (
    PACKAGED_LLMS,
    CausalLM,
    canonical_llm_id,
    load_causal_lm,
)
from pursuit.retrievers.lm.dtypes import resolve_dtype

if TYPE_CHECKING:
    from pursuit.retrievers.llmql.training import LLMQLConfig


class Run:
    """The model being trained and how each step's batch and loss are made.

    Args:
        config: The run's settings.
        lm: A loaded model to train in place; ``None`` loads ``config.model``.
    """

    def __init__(self, config: LLMQLConfig, lm: CausalLM | None = None) -> None:
        self.config = config
        if lm is None:
            # Packaged weights come from the conversion cache of the dtype "auto" picks here
            # (they were 4-bit, so widening either cache to float32 loses nothing); other
            # models load in float32 directly. Training keeps float32 master weights.
            packaged = canonical_llm_id(config.model) in PACKAGED_LLMS
            lm = load_causal_lm(config.model, dtype="auto" if packaged else "float32",
                                device=config.device)
            lm.model.float()
        self.lm, self.model, self.tok = lm, lm.model, lm.tokenizer
        self.end_id = end_token_id(self.tok, config.end_token)
        pad = self.tok.pad_token_id
        self.pad_id = int(pad if pad is not None else self.end_id)
        self.mask = mask_token(self.tok, self.end_id, config.mask_token)
        if config.lora_rank > 0:
            apply_lora(self.model, rank=config.lora_rank, alpha=config.lora_alpha,
                       dropout=config.lora_dropout, targets=config.lora_targets)
        if config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
            self.model.enable_input_require_grads()
        device = next(self.model.parameters()).device
        # amp="auto" autocasts to bfloat16 exactly where dtype "auto" picks it.
        bf16 = (config.amp == "bfloat16" or config.amp == "auto"
                and resolve_dtype("auto", device) == torch.bfloat16)
        self.autocast: Callable[[], AbstractContextManager[Any]] = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
            if bf16 else nullcontext)

    def _doc_rows(self, texts: Sequence[str]) -> list[list[int]]:
        return [prompt_ids(self.tok, self.config.passage_prompt, t,
                           max_tokens=self.config.max_doc_tokens, end_id=self.end_id)
                for t in texts]

    def stage1_rows(self, batch: Sequence[TrainPair], rng: np.random.Generator
                    ) -> tuple[list[list[int]], list[list[int]]]:
        """Corrupted passage prompts (ending in ``[E]``) and query ids of ``batch``."""
        c = self.config
        texts = [corrupt_words(p.doc.contents(), c.corruption, self.mask, rng) for p in batch]
        queries = [list(self.tok(p.query, add_special_tokens=False)["input_ids"])[
            :c.max_query_tokens] for p in batch]
        return self._doc_rows(texts), queries

    def stage2_rows(self, batch: Sequence[TrainPair], negatives: Mapping[str, list[str]],
                    docs: Mapping[str, str], rng: np.random.Generator
                    ) -> tuple[list[list[int]], list[list[int]], list[int], torch.Tensor]:
        """Query rows, distinct passage rows, each query's target, excluded positives."""
        chosen = [p.doc.id for p in batch]  # positives first, then sampled hard negatives
        for pair in batch:
            pool = negatives.get(pair.query_id, [])
            k = min(self.config.hard_negatives, len(pool))
            chosen += [pool[j] for j in sorted(rng.choice(len(pool), size=k, replace=False))]
        ids = list(dict.fromkeys(chosen))  # distinct, first occurrence kept
        targets = [ids.index(p.doc.id) for p in batch]
        excluded = torch.tensor([[d in p.positives and j != t for j, d in enumerate(ids)]
                                 for p, t in zip(batch, targets, strict=True)])
        queries = [prompt_ids(self.tok, self.config.query_prompt, p.query,
                              max_tokens=self.config.max_query_tokens, end_id=self.end_id)
                   for p in batch]
        return queries, self._doc_rows([docs[d] for d in ids]), targets, excluded

    def loss(self, stage: int, step: int, pairs: Sequence[TrainPair],
             negatives: Mapping[str, list[str]], docs: Mapping[str, str]) -> torch.Tensor:
        """The loss of optimisation ``step`` of ``stage`` (model put in training mode).

        Args:
            stage: 1 or 2.
            step: The step within the stage (picks the batch and seeds its randomness).
            pairs: All training pairs.
            negatives: Query id -> hard negative ids (stage 2).
            docs: Document id -> text, for the hard negatives (stage 2).
        """
        c = self.config
        size = c.stage1_batch_size if stage == 1 else c.stage2_batch_size
        batch = [pairs[i] for i in step_batch(len(pairs), size, step, seed=c.seed + stage)]
        rng = np.random.default_rng([c.seed, stage, step])
        self.model.train()
        with self.autocast():
            if stage == 1:
                prompts, queries = self.stage1_rows(batch, rng)
                return ql_loss(self.model, prompts, queries, pad_id=self.pad_id,
                               attention_stop=c.attention_stop)
            rows = self.stage2_rows(batch, negatives, docs, rng)
            return contrastive_loss(self.model, *rows, pad_id=self.pad_id,
                                    temperature=c.temperature, pooling=c.pooling)

    @contextmanager
    def progress(self, show: bool, label: str, total: int, done: int
                 ) -> Iterator[Callable[[float], None]]:
        """A rich progress bar for one stage; yields ``advance(loss)``."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())
        with Progress(*columns, disable=not show) as bar:
            task = bar.add_task(label, total=total, completed=done, loss="-")
            yield lambda loss: bar.update(task, advance=1, loss=f"{loss:.4f}")

    def save_model(self, folder: Path, *, dataset: str, n_pairs: int,
                   losses: dict[str, list[float]], train_s: float, command: str | None) -> None:
        """Merge any adapters and write the model, tokenizer and metadata, atomically."""
        c = self.config
        merge_lora(self.model)
        self.model.eval()
        self.model.to(resolve_dtype(c.save_dtype))
        tmp = folder.parent / f".{folder.name}.tmp"
        self.remove(tmp)
        self.model.save_pretrained(tmp)
        self.tok.save_pretrained(tmp)
        meta = {
            "format": 1,
            "encoder": {"prompts": {"passage": c.passage_prompt, "query": c.query_prompt},
                        "pooling": c.pooling, "end_token": self.tok.convert_ids_to_tokens(
                            self.end_id), "max_doc_tokens": c.max_doc_tokens,
                        "max_query_tokens": c.max_query_tokens, "base_model": self.lm.model_id},
            "config": asdict(c), "dataset": dataset, "pairs": n_pairs,
            "steps": {k: len(v) for k, v in losses.items()}, "losses": losses,
            "train_s": round(train_s, 2), "command": command,
            "device": str(next(self.model.parameters()).device),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmp, folder)

    @staticmethod
    def remove(path: Path) -> None:
        """Delete a folder if it exists."""
        shutil.rmtree(path, ignore_errors=True)
