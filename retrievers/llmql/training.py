"""LLM-QL: train a causal LM into a dense retriever (Zhang et al., 2025; ``docs/methods.md`` §3).

Stage 1, query-likelihood modelling: ``passage prompt · [E] · query`` rows with Attention
Stop (query tokens see ``[E]`` and earlier query tokens, never the passage) and Input
Corruption (each passage word masked with probability ``corruption``), next-token loss on
the query. Stage 2, contrastive fine-tuning of the ``[E]`` embedding: InfoNCE at
temperature 0.01 over in-batch negatives plus BM25 hard negatives from the training corpus
(positives excluded). Full fine-tuning by default, LoRA with ``lora_rank > 0``
(:mod:`pursuit.retrievers.llmql.lora`, no extra package). Losses: :mod:`~.llmql_loss`;
data: :mod:`~.llmql_data`; checkpoints: :mod:`~.llmql_train`.

The output folder holds resumable checkpoints while training and ``model/`` at the end: a
transformers model folder with ``pursuit-llmql.json`` (prompts, ``[E]``, pooling, the
config, losses, wall time, command), which :class:`~.llm_encoder.LLMEncoder` loads.

Full-scale runs (SciFact train: 809 claims, 919 pairs)::

    pursuit train llm-ql ../shared/data/beir-scifact --out runs/llmql-0.5b \\
        --model qwen2.5-coder-0.5b --device auto            # GPU: ~minutes; 2 CPUs: hours
    pursuit train llm-ql ../shared/data/beir-scifact --out runs/llmql-135m \\
        --model smollm2-135m --stage1-batch-size 16 --stage2-batch-size 16

Rerunning the same command resumes from the last checkpoint; ``--stop-after N`` ends a
session after N steps (with a checkpoint) for time-boxed machines.

Example:
    >>> result = train_llmql(LLMQLConfig(model="smollm2-135m"), read_beir(path, "train"),
    ...                      "runs/llmql")  # doctest: +SKIP
    >>> LLMEncoder(str(result.model_dir))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pursuit.indexes.datasets.beir import Dataset
from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.llmql.data import mine_hard_negatives, training_pairs
from pursuit.retrievers.llmql.encoder import METADATA_FILE, PASSAGE_PROMPT, QUERY_PROMPT
from pursuit.retrievers.llmql.lora import DEFAULT_TARGETS
from pursuit.retrievers.llmql.run import Run
from pursuit.retrievers.llmql.steps import (
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    lr_at,
    optimizer_for,
    optimizer_step,
    save_checkpoint,
)
from pursuit.retrievers.lm.causal import CausalLM

#: Config fields that may change when a run is resumed (they do not change the result).
RUNTIME_FIELDS = ("device", "save_every")
#: Settings only stage 2 reads: they may change when a run resumes at the start of stage 2
#: (stage 1 finished, stage 2 not begun), e.g. to fit stage 2 to the time left.
STAGE2_FIELDS = ("stage2_epochs", "stage2_batch_size", "stage2_lr", "temperature",
                 "hard_negatives")


@dataclass(frozen=True)
class LLMQLConfig:
    """Everything that determines an LLM-QL training run (recorded with the model).

    Attributes:
        model: Base model: packaged name, hub id or local folder.
        stages: Which stages to run, in order: ``(1, 2)``, ``(1,)`` or ``(2,)``.
        passage_prompt, query_prompt: Encoder prompts (``{text}`` placeholder).
        end_token: ``[E]``; ``None`` for the tokenizer's end-of-sequence token.
        pooling: ``"end"`` (``[E]`` state) or ``"mean"``, for stage 2 and the encoder.
        max_doc_tokens, max_query_tokens: Truncation of passages and queries.
        corruption: Stage-1 probability of masking each passage word.
        mask_token: The mask; ``None`` picks the tokenizer's mask/unk/pad token.
        attention_stop: Stage-1 Attention Stop (``False`` only for ablations).
        stage1_epochs, stage2_epochs: Passes over the training pairs.
        stage1_batch_size, stage2_batch_size: Pairs per step.
        max_steps: Cap on the steps of each stage (``None``: the epochs decide).
        stage1_lr, stage2_lr: Peak learning rates (AdamW).
        warmup: Share of a stage's steps spent warming up, then linear decay.
        weight_decay, max_grad_norm: AdamW weight decay and gradient clipping.
        temperature: Stage-2 InfoNCE temperature.
        hard_negatives: BM25 negatives per pair in stage 2.
        negative_depth: BM25 depth the negatives are drawn from (positives removed).
        lora_rank: 0 for full fine-tuning, else the rank of the adapters.
        lora_alpha, lora_dropout, lora_targets: LoRA scale, dropout and layer names.
        seed: Seeds weights' adapters, batch order, corruption and negative sampling.
        device: ``"auto"`` (CUDA when visible), ``"cpu"`` or ``"cuda[:n]"``.
        amp: ``"auto"`` (bfloat16 autocast on GPUs and CPUs with native bf16), ``"bfloat16"``
            or ``"none"``; weights and optimizer stay float32 either way.
        gradient_checkpointing: Recompute activations in the backward pass (less memory).
        save_every: Steps between checkpoints.
        save_dtype: dtype of the final model's weights.
    """

    model: str = "qwen2.5-coder-0.5b"
    stages: tuple[int, ...] = (1, 2)
    passage_prompt: str = PASSAGE_PROMPT
    query_prompt: str = QUERY_PROMPT
    end_token: str | None = None
    pooling: str = "end"
    max_doc_tokens: int = 512
    max_query_tokens: int = 64
    corruption: float = 0.5
    mask_token: str | None = None
    attention_stop: bool = True
    stage1_epochs: int = 1
    stage2_epochs: int = 1
    stage1_batch_size: int = 8
    stage2_batch_size: int = 8
    max_steps: int | None = None
    stage1_lr: float = 2e-5
    stage2_lr: float = 1e-5
    warmup: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    temperature: float = 0.01
    hard_negatives: int = 3
    negative_depth: int = 30
    lora_rank: int = 0
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = DEFAULT_TARGETS
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    gradient_checkpointing: bool = False
    save_every: int = 50
    save_dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        if not self.stages or any(s not in (1, 2) for s in self.stages) or list(
                self.stages) != sorted(set(self.stages)):
            raise PursuitError(f"stages must be (1, 2), (1,) or (2,), got {self.stages}")
        if self.amp not in ("auto", "bfloat16", "none"):
            raise PursuitError(f"amp must be 'auto', 'bfloat16' or 'none', got {self.amp!r}")
        if min(self.stage1_batch_size, self.stage2_batch_size, self.save_every) < 1:
            raise PursuitError("batch sizes and save_every must be >= 1")

    def steps(self, stage: int, n_pairs: int) -> int:
        """Optimisation steps of ``stage`` over ``n_pairs`` training pairs."""
        size = self.stage1_batch_size if stage == 1 else self.stage2_batch_size
        epochs = self.stage1_epochs if stage == 1 else self.stage2_epochs
        total = epochs * -(-n_pairs // size)
        return total if self.max_steps is None else min(total, self.max_steps)

    def fingerprint(self) -> dict[str, Any]:
        """The fields that must match for a run to resume."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_FIELDS}


@dataclass(frozen=True)
class TrainResult:
    """How a call of :func:`train_llmql` ended.

    Attributes:
        out: The output folder.
        finished: Whether every stage is done and ``model_dir`` written.
        model_dir: ``out/model`` when finished, else ``None``.
        stage, step: Where the run stands (the last stage and its step count when finished).
        losses: Stage -> every step's loss so far.
        train_s: Seconds spent training over all sessions.
    """

    out: Path
    finished: bool
    model_dir: Path | None
    stage: int
    step: int
    losses: dict[str, list[float]] = field(default_factory=dict)
    train_s: float = 0.0


def _at_stage2_start(out: Path) -> bool:
    """Whether the run's last checkpoint is stage 2, step 0 (stage 1 done, stage 2 not begun)."""
    resume = latest_checkpoint(out)
    if resume is None:
        return False
    state = json.loads((resume / "state.json").read_text())
    return bool(state.get("stage") == 2 and state.get("step") == 0)


def _check_config(out: Path, config: LLMQLConfig) -> None:
    path = out / "config.json"
    wanted = json.loads(json.dumps(config.fingerprint()))  # tuples as lists, like on disk
    if not path.is_file():
        path.write_text(json.dumps(wanted, indent=1) + "\n")
        return
    have = json.loads(path.read_text())
    changes = have.pop("stage2_changes", [])  # earlier changes between the stages
    diff = sorted(k for k in set(have) | set(wanted) if have.get(k) != wanted.get(k))
    if not diff:
        return
    if set(diff) <= set(STAGE2_FIELDS) and _at_stage2_start(out):
        changes.append({k: {"was": have.get(k), "now": wanted.get(k)} for k in diff})
        tmp = out / ".config.json.tmp"
        tmp.write_text(json.dumps(wanted | {"stage2_changes": changes}, indent=1) + "\n")
        tmp.replace(path)
        return
    hint = (f"; stage-2 settings ({', '.join(STAGE2_FIELDS)}) may change only between the "
            "stages" if set(diff) <= set(STAGE2_FIELDS) else "")
    raise PursuitError(f"{out} holds a run with other settings ({', '.join(diff)} differ)"
                       f"{hint}; rerun with the same settings to resume, or use another --out")


def _negatives(out: Path, config: LLMQLConfig, dataset: Dataset,
               pairs: list[Any]) -> dict[str, list[str]]:
    path = out / "negatives.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    negatives = mine_hard_negatives(pairs, dataset.corpus, depth=config.negative_depth)
    tmp = out / ".negatives.json.tmp"
    tmp.write_text(json.dumps(negatives) + "\n")
    tmp.replace(path)
    return negatives


def train_llmql(config: LLMQLConfig, dataset: Dataset, out: str | Path, *,
                lm: CausalLM | None = None, show_progress: bool = False,
                stop_after: int | None = None, command: str | None = None) -> TrainResult:
    """Train (or resume training) an LLM-QL retriever into ``out``.

    Args:
        config: The run's settings; a resumed run must use the same ones, apart from
            :data:`RUNTIME_FIELDS`, and :data:`STAGE2_FIELDS` when it resumes at the start
            of stage 2 (the change is recorded in ``config.json``).
        dataset: Training split (queries, qrels, corpus), e.g. ``read_beir(p, "train")``.
        out: Output folder (created; a checkpoint there is resumed).
        lm: An already loaded model to train in place (tests); default: load
            ``config.model`` in float32.
        show_progress: A rich progress bar with the running loss.
        stop_after: End this call after this many steps, with a checkpoint.
        command: The command line, recorded with the model.

    Raises:
        PursuitError: ``out`` holds a run with other settings or a damaged checkpoint.
    """
    out = Path(out)
    model_dir = out / "model"
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, config)
    if (model_dir / METADATA_FILE).is_file():  # done already: nothing to train
        meta = json.loads((model_dir / METADATA_FILE).read_text())
        return TrainResult(out, True, model_dir, config.stages[-1], meta["steps"][
            str(config.stages[-1])], meta["losses"], meta["train_s"])
    torch.manual_seed(config.seed)
    run = Run(config, lm)
    pairs = training_pairs(dataset)
    negatives = _negatives(out, config, dataset, pairs) if 2 in config.stages else {}
    docs = {d.id: d.contents() for d in dataset.corpus} if 2 in config.stages else {}
    state, opt_state = TrainState(stage=config.stages[0]), None
    resume = latest_checkpoint(out)
    if resume is not None:
        state, opt_state = load_checkpoint(resume, run.model)
    done_here, started = 0, time.perf_counter()

    def checkpoint(optimizer: torch.optim.Optimizer | None) -> None:
        nonlocal started
        state.train_s += time.perf_counter() - started
        started = time.perf_counter()
        save_checkpoint(out, run.model, optimizer, state)

    for stage in (s for s in config.stages if s >= state.stage):
        total = config.steps(stage, len(pairs))
        lr = config.stage1_lr if stage == 1 else config.stage2_lr
        optimizer = optimizer_for(run.model, lr=lr, weight_decay=config.weight_decay)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
            opt_state = None
        with run.progress(show_progress, f"stage {stage}", total, state.step) as advance:
            while state.step < total:
                if stop_after is not None and done_here >= stop_after:
                    checkpoint(optimizer)
                    return TrainResult(out, False, None, stage, state.step, state.losses,
                                       state.train_s)
                loss = run.loss(stage, state.step, pairs, negatives, docs)
                value = optimizer_step(run.model, optimizer, loss, max_grad_norm=(
                    config.max_grad_norm), lr=lr_at(state.step, total, lr, config.warmup))
                state.losses[str(stage)].append(value)
                state.step += 1
                done_here += 1
                advance(value)
                if state.step % config.save_every == 0 and state.step < total:
                    checkpoint(optimizer)
        if stage != config.stages[-1]:
            state.stage, state.step = stage + 1, 0
            checkpoint(None)  # the next stage starts with a fresh optimizer
    state.train_s += time.perf_counter() - started
    run.save_model(model_dir, dataset=dataset.name, n_pairs=len(pairs), losses=state.losses,
                   train_s=state.train_s, command=command)
    for old in out.glob("ckpt-s*"):
        run.remove(old)
    (out / "latest").unlink(missing_ok=True)
    return TrainResult(out, True, model_dir, config.stages[-1], state.step, state.losses,
                       state.train_s)
