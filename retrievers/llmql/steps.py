"""LLM-QL training mechanics: resumable checkpoints, the learning-rate schedule, one step.

A checkpoint is a folder ``ckpt-s{stage}-{step}`` in the output folder holding the trainable
weights (``trainable.safetensors``: every weight for full fine-tuning, the adapters with
LoRA), the optimizer state, torch's RNG states and ``state.json`` (stage, step, losses,
seconds trained). It is written under a temporary name and renamed into place; the file
``latest`` (replaced atomically) then names it, and only after that are older checkpoints
removed, so a crash at any point leaves a whole checkpoint to resume from. Every other
random choice (batch order, corruption, negatives) is derived from ``(seed, stage, step)``,
so a resumed run takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pursuit.indexes.errors import PursuitError

LATEST = "latest"


@dataclass
class TrainState:
    """Where a run stands (mutable: the loop advances it).

    Attributes:
        stage: The stage being trained (1 or 2).
        step: Optimisation steps done in that stage.
        losses: Stage (``"1"``, ``"2"``) -> the loss of every step so far.
        train_s: Seconds spent training, summed over every session of the run.
    """

    stage: int
    step: int = 0
    losses: dict[str, list[float]] = field(default_factory=lambda: {"1": [], "2": []})
    train_s: float = 0.0


def trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters that train, by name (tied weights appear once)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def lr_at(step: int, total: int, base: float, warmup: float) -> float:
    """Linear warm-up over ``warmup`` of the ``total`` steps, then linear decay towards 0."""
    warm = max(1, round(warmup * total))
    if step < warm:
        return base * (step + 1) / warm
    return base * max(0.0, (total - step) / max(1, total - warm))


def optimizer_for(model: torch.nn.Module, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters."""
    return torch.optim.AdamW(list(trainable(model).values()), lr=lr, weight_decay=weight_decay)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   *, lr: float, max_grad_norm: float) -> float:
    """Backpropagate ``loss``, clip, step at ``lr``; returns the loss value."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    torch.nn.utils.clip_grad_norm_(list(trainable(model).values()), max_grad_norm)
    optimizer.step()
    return float(loss.detach())


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: TrainState) -> Path:
    """Write a checkpoint of ``state`` atomically and make it the one to resume from."""
    name = f"ckpt-s{state.stage}-{state.step:07d}"
    final, tmp = out / name, out / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: p.detach().contiguous().cpu() for k, p in trainable(model).items()}
    save_file(weights, str(tmp / "trainable.safetensors"))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(
        {"stage": state.stage, "step": state.step, "losses": state.losses,
         "train_s": state.train_s}, indent=1) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = out / f".{LATEST}.tmp"
    pointer.write_text(name + "\n")
    os.replace(pointer, out / LATEST)
    for old in out.glob("ckpt-s*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out: Path) -> Path | None:
    """The checkpoint ``latest`` names, or ``None`` when the run has none yet.

    Raises:
        PursuitError: ``latest`` names a folder that is missing.
    """
    pointer = out / LATEST
    if not pointer.is_file():
        return None
    path = out / pointer.read_text().strip()
    if not (path / "state.json").is_file():
        raise PursuitError(f"{pointer} names {path}, which is missing or incomplete; delete "
                           f"{pointer} to start the run over, or use another output folder")
    return path


def load_checkpoint(path: Path, model: torch.nn.Module) -> tuple[TrainState, dict[str, Any] | None]:
    """Restore the trainable weights and RNG states; returns the state and optimizer state.

    Raises:
        PursuitError: the checkpoint's weights do not match the model's trainable ones (a
            different model or LoRA setting).
    """
    saved = load_file(str(path / "trainable.safetensors"))
    params = trainable(model)
    if set(saved) != set(params):
        extra, missing = sorted(set(saved) - set(params)), sorted(set(params) - set(saved))
        raise PursuitError(f"checkpoint {path} does not fit the model (unexpected "
                           f"{extra[:3]}, missing {missing[:3]}); resume with the same model "
                           "and LoRA settings, or use another output folder")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name].to(p.device, p.dtype))
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    meta = json.loads((path / "state.json").read_text())
    state = TrainState(stage=int(meta["stage"]), step=int(meta["step"]),
                       losses={k: list(v) for k, v in meta["losses"].items()},
                       train_s=float(meta["train_s"]))
    opt = path / "optimizer.pt"
    device = next(model.parameters()).device
    return state, (torch.load(opt, map_location=device, weights_only=False)
                   if opt.is_file() else None)
