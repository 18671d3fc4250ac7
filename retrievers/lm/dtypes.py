"""Which dtype a model computes in: one resolver for every model pursuit loads.

``"auto"`` picks bfloat16 where the hardware computes it natively (CUDA GPUs that support
it; CPUs with AVX512-BF16 or AMX) and float32 everywhere else. A CPU without native bf16
(AVX2 only, e.g. many AMD EPYC and older Intel parts) emulates it, and the 0.5B reranker
then runs several times slower than in float32 (``bench/dtype.py`` measures it).

Example:
    >>> dtype_name("bf16")
    'bfloat16'
    >>> resolve_dtype("auto", "cpu", flags=["avx2"])
    torch.float32
    >>> resolve_dtype("auto", "cpu", flags=["avx2", "avx512_bf16"])
    torch.bfloat16
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pursuit.indexes.errors import PursuitError

if TYPE_CHECKING:  # torch is imported only when a dtype is resolved
    import torch

__all__ = ["DTYPE_CHOICES", "DtypeError", "NATIVE_BF16_FLAGS", "RECORDED_CPU_FLAGS",
           "cpu_flags", "dtype_name", "native_bf16", "resolve_dtype"]

#: What a ``dtype`` option accepts (plus the aliases bf16, fp32 and fp16, any case).
DTYPE_CHOICES = ("auto", "bfloat16", "float32", "float16")
_ALIASES = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}
#: ``/proc/cpuinfo`` flags of the instructions that compute bfloat16 natively.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: The CPU flags benchmark results record: what decides float32 against bfloat16 speed.
RECORDED_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                      "amx_tile", "amx_bf16")


class DtypeError(PursuitError, ValueError):
    """A ``dtype`` option that is not one of :data:`DTYPE_CHOICES` or their aliases."""


def dtype_name(dtype: str | torch.dtype) -> str:
    """The canonical name of a dtype option: ``auto``, ``bfloat16``, ``float32`` or ``float16``.

    Aliases (``bf16``, ``fp32``, ``fp16``) and any letter case are accepted; a torch dtype
    gives its own name. Needs no torch import for strings, so a typo fails at once.

    Raises:
        DtypeError: anything else, naming the choices.

    Example:
        >>> dtype_name("FP32"), dtype_name("auto")
        ('float32', 'auto')
    """
    if not isinstance(dtype, str):
        name = str(dtype).removeprefix("torch.")
    else:
        name = _ALIASES.get(dtype.strip().lower(), dtype.strip().lower())
    if name not in DTYPE_CHOICES:
        raise DtypeError(
            f"dtype={dtype!r} is not supported; use one of {', '.join(map(repr, DTYPE_CHOICES))} "
            f"(or bf16, fp32, fp16); 'auto' picks bfloat16 where the hardware computes it "
            f"natively (CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX) and float32 elsewhere")
    return name


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The flags of :data:`RECORDED_CPU_FLAGS` this CPU reports, in that order.

    Read from the first ``flags`` line of ``cpuinfo``; empty where there is no such file
    (macOS, Windows), so benchmark results can always record it.

    Example:
        >>> cpu_flags()  # doctest: +SKIP
        ['avx2']
    """
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            present = set(value.split())
            return [f for f in RECORDED_CPU_FLAGS if f in present]
    return []


def native_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX).

    Args:
        flags: CPU flags to decide from (tests pass them); ``None`` asks torch's own probes,
            which also check that the operating system enables the instructions.
    """
    if flags is not None:
        return bool(set(flags) & set(NATIVE_BF16_FLAGS))
    import torch

    # Private probes (torch >= 2.1); a torch without them is treated as lacking bf16.
    probes = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(p is not None and p() for p in probes)


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str | torch.device = "cpu", *,
                  flags: Iterable[str] | None = None) -> torch.dtype:
    """The torch dtype a model on ``device`` computes in, given a ``dtype`` option.

    Args:
        dtype: ``"auto"``, ``"bfloat16"``/``"bf16"``, ``"float32"``/``"fp32"``,
            ``"float16"``/``"fp16"`` (any case), or a torch dtype (returned as it is).
        device: Where the model runs: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a
            ``torch.device``, or ``"auto"`` (CUDA when visible, else the CPU).
        flags: CPU flags that decide ``"auto"`` on a CPU instead of torch's probes
            (see :func:`native_bf16`).

    Returns:
        ``"auto"`` is bfloat16 on CUDA devices that support it and on CPUs with native
        bf16, float32 elsewhere; a named dtype is that dtype on every device.

    Raises:
        DtypeError: an unknown ``dtype``, naming the choices.

    Example:
        >>> resolve_dtype("fp16", "cuda")
        torch.float16
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype_name(dtype)
    if name != "auto":
        return getattr(torch, name)  # type: ignore[no-any-return]
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if kind == "cpu":
        return torch.bfloat16 if native_bf16(flags) else torch.float32
    return torch.float32
