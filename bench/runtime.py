"""What a benchmark result records about where it ran: CPU, its bf16 flags, torch, dtype.

Shared by the scripts that load a model (``bench/rerank.py``, ``bench/dtype.py``, ...):
each adds ``"runtime": runtime(lm.dtype)`` to its result JSON, so a number measured on an
AVX2-only CPU in float32 is never compared blind with one from an AMX CPU in bfloat16.
The scripts import it as a sibling (``bench/`` is on ``sys.path`` when one runs).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from pursuit.retrievers.lm.dtypes import cpu_flags, dtype_name, resolve_dtype


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's marketing name (``model name`` in ``cpuinfo``), else what platform says."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runtime(dtype: str | torch.dtype | None = None, device: str = "cpu") -> dict[str, Any]:
    """The ``runtime`` record of a result: machine, CPU flags, torch, threads and dtype.

    Args:
        dtype: The dtype the benchmark's models computed in (a loaded model's ``.dtype``);
            ``None``: the one ``"auto"`` picks on ``device``.
        device: Where they ran.
    """
    resolved = resolve_dtype("auto" if dtype is None else dtype, device)
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "cpu_flags": cpu_flags(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": device, "dtype": dtype_name(resolved),
            "python": platform.python_version()}
