"""A small LoRA for LLM-QL training, so low-rank fine-tuning needs no extra package.

``peft`` is not a dependency of pursuit; this covers what LLM-QL needs: low-rank adapters
on chosen linear layers (``W x + (alpha / r) * B A x``, ``B`` starting at zero so training
starts from the base model exactly), every other weight frozen, and merging the adapters
back into plain ``nn.Linear`` weights so the saved model loads with transformers alone.

Example:
    >>> n = apply_lora(lm.model, rank=16, alpha=32)  # doctest: +SKIP
    >>> ...train...; merge_lora(lm.model); lm.model.save_pretrained("out")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pursuit.indexes.errors import PursuitError

#: The attention and MLP projections of Llama/Qwen-style decoders.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    """``base(x) + scale * B(A(dropout(x)))`` with ``base`` frozen.

    Args:
        base: The linear layer to adapt.
        rank: Rank ``r`` of the update.
        alpha: The update is scaled by ``alpha / rank``.
        dropout: Dropout on the adapter's input.
    """

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        weight = base.weight
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=weight.dtype,
                                               device=weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=weight.dtype,
                                               device=weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The adapted projection of ``x``."""
        update = nn.functional.linear(nn.functional.linear(self.dropout(x), self.lora_a),
                                      self.lora_b)
        return self.base(x) + self.scale * update

    def merged(self) -> nn.Linear:
        """The base layer with the update folded into its weight."""
        with torch.no_grad():
            delta = (self.lora_b.float() @ self.lora_a.float()) * self.scale
            self.base.weight += delta.to(self.base.weight.dtype)
        for p in self.base.parameters():
            p.requires_grad_(True)
        return self.base


def apply_lora(model: nn.Module, *, rank: int, alpha: float = 32.0, dropout: float = 0.0,
               targets: Sequence[str] = DEFAULT_TARGETS) -> int:
    """Wrap every linear layer named in ``targets`` and freeze all other parameters.

    Args:
        model: The model, changed in place.
        rank: Adapter rank (>= 1).
        alpha: Scale numerator.
        dropout: Adapter input dropout.
        targets: Last components of the module names to adapt.

    Returns:
        How many layers were wrapped.

    Raises:
        PursuitError: ``rank < 1`` or no layer matched ``targets``.
    """
    if rank < 1:
        raise PursuitError(f"LoRA rank must be >= 1, got {rank}; use rank 0 in the training "
                           "config for full fine-tuning")
    for p in model.parameters():
        p.requires_grad_(False)
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets]
    if not names:
        raise PursuitError(f"no linear layer of the model is named one of {list(targets)}; "
                           "pass lora_targets= naming its projections")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), rank=rank, alpha=alpha,
                                          dropout=dropout))
    return len(names)


def merge_lora(model: nn.Module) -> int:
    """Fold every :class:`LoRALinear` of ``model`` back into a plain linear layer.

    Returns:
        How many layers were merged.
    """
    names = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, getattr(parent, child).merged())
    for p in model.parameters():
        p.requires_grad_(True)
    return len(names)
