"""``pursuit train``: train retrievers (LLM-QL), a sub-command group of :mod:`pursuit.ui.cli.app`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pursuit.indexes.errors import PursuitError
from pursuit.ui.cli.output import JsonOpt, console, emit

__all__ = ["train_app"]

train_app = typer.Typer(no_args_is_help=True, help="Train retrievers (LLM-QL).")
@train_app.command("llm-ql")
def train_llm_ql(
    data: Annotated[Path, typer.Argument(help="BEIR folder with qrels/<split>.tsv, e.g. ../shared/data/beir-scifact.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: checkpoints, then model/. Rerun to resume.")],
    model: Annotated[str, typer.Option(help="Base causal LM: packaged name, hub id or local folder.")] = "qwen2.5-coder-0.5b",
    split: Annotated[str, typer.Option(help="Qrels split to train on.")] = "train",
    stages: Annotated[str, typer.Option(help="Stages to run: '1,2', '1' (query likelihood) or '2' (contrastive).")] = "1,2",
    stage1_epochs: Annotated[int, typer.Option(help="Stage-1 passes over the pairs.")] = 1,
    stage2_epochs: Annotated[int, typer.Option(help="Stage-2 passes over the pairs.")] = 1,
    stage1_batch_size: Annotated[int, typer.Option(help="Stage-1 pairs per step.")] = 8,
    stage2_batch_size: Annotated[int, typer.Option(help="Stage-2 pairs per step (in-batch negatives).")] = 8,
    max_steps: Annotated[int | None, typer.Option(help="Cap on the steps of each stage.")] = None,
    stage1_lr: Annotated[float, typer.Option(help="Stage-1 peak learning rate.")] = 2e-5,
    stage2_lr: Annotated[float, typer.Option(help="Stage-2 peak learning rate.")] = 1e-5,
    corruption: Annotated[float, typer.Option(help="Stage-1 probability of masking each passage word.")] = 0.5,
    temperature: Annotated[float, typer.Option(help="Stage-2 InfoNCE temperature.")] = 0.01,
    hard_negatives: Annotated[int, typer.Option(help="BM25 hard negatives per pair in stage 2.")] = 3,
    max_doc_tokens: Annotated[int, typer.Option(help="Passages are cut to this many tokens.")] = 512,
    max_query_tokens: Annotated[int, typer.Option(help="Queries are cut to this many tokens.")] = 64,
    lora_rank: Annotated[int, typer.Option(help="0: full fine-tuning; else LoRA adapters of this rank.")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of adapters, batch order, corruption and negatives.")] = 0,
    device: Annotated[str, typer.Option(help="'auto' (CUDA when visible), 'cpu' or 'cuda[:n]'.")] = "auto",
    amp: Annotated[str, typer.Option(help="'auto' (bf16 autocast where native), 'bfloat16' or 'none'.")] = "auto",
    gradient_checkpointing: Annotated[bool, typer.Option(help="Recompute activations to save memory.")] = False,
    save_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 50,
    stop_after: Annotated[int | None, typer.Option(help="End this session after N steps, with a checkpoint.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a causal LM into a dense retriever with LLM-QL (query likelihood, then contrastive).

    The result, OUT/model, is a model folder for pursuit.retrievers.llmql.encoder.LLMEncoder;
    an index built with that encoder reopens with it (its manifest records the checkpoint).
    Rerunning the same command resumes from the last checkpoint.
    """
    import shlex

    from pursuit.indexes.datasets.beir import read_beir
    from pursuit.retrievers.llmql.training import LLMQLConfig, train_llmql

    try:
        stage_list = tuple(int(s) for s in stages.split(","))
    except ValueError:
        raise PursuitError(f"--stages must be '1,2', '1' or '2', got {stages!r}") from None
    config = LLMQLConfig(
        model=model, stages=stage_list, stage1_epochs=stage1_epochs, stage2_epochs=stage2_epochs,
        stage1_batch_size=stage1_batch_size, stage2_batch_size=stage2_batch_size,
        max_steps=max_steps, stage1_lr=stage1_lr, stage2_lr=stage2_lr, corruption=corruption,
        temperature=temperature, hard_negatives=hard_negatives, max_doc_tokens=max_doc_tokens,
        max_query_tokens=max_query_tokens, lora_rank=lora_rank, seed=seed, device=device,
        amp=amp, gradient_checkpointing=gradient_checkpointing, save_every=save_every)
    result = train_llmql(config, read_beir(data, split), out, show_progress=not as_json,
                         stop_after=stop_after, command=shlex.join(["pursuit", *sys.argv[1:]]))
    summary = {"out": str(result.out), "finished": result.finished,
               "model_dir": str(result.model_dir) if result.model_dir else None,
               "stage": result.stage, "step": result.step, "train_s": round(result.train_s, 1),
               "last_loss": {k: v[-1] for k, v in result.losses.items() if v}}
    if as_json:
        emit(summary)
    elif result.finished:
        console.print(f"[green]Trained[/] {result.model_dir} in {summary['train_s']} s; last "
                      f"losses {summary['last_loss']}")
    else:
        console.print(f"[yellow]Stopped[/] at stage {result.stage}, step {result.step}; rerun "
                      "the same command to resume")
