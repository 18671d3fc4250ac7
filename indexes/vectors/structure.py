"""The FAISS structure behind a :class:`~pursuit.indexes.vectors.store.FaissIndex`, and how a
search runs on it.

A search takes one of four paths, picked once per index state:

* ``faiss``: the structure on the CPU, with HNSW/IVF search parameters and, under a filter,
  an ``IDSelectorBitmap``;
* ``faiss-gpu``: a GPU copy of the structure, when faiss was built with GPU support
  (unfiltered searches; filtered ones stay on the CPU structure);
* ``torch``: exact matrix products on a CUDA GPU, when torch sees one but faiss does not;
* exact numpy (:func:`~pursuit.indexes.exact.exact_search`) under a tight filter, for a
  structure that takes no selector, and for queries an approximate structure answered short.

Positions here are positions in the index's vector matrix; mapping them to document-store
rows is the caller's job.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from pursuit.indexes.exact import TorchExactSearch, exact_search

METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
#: HNSW search depth (its recall against exact search: ``bench/dense.py``, BENCHMARKS.md).
DEFAULT_EF_SEARCH = 128
#: IVF lists probed per query (capped at the number of lists).
DEFAULT_NPROBE = 16
# A filtered search goes exact when at most this share of the vectors passes the filter:
# the subset is small enough to scan, and ANN graphs recall poorly under tight filters.
EXACT_SHARE = 0.125


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (without importing torch where no driver exists)."""
    # Importing torch just to learn there is no GPU costs ~2 s; without the NVIDIA
    # driver's control device there is no CUDA GPU to find.
    if "torch" not in sys.modules and not os.path.exists("/dev/nvidiactl"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pick_backend(device: str) -> str:
    """The search path for ``device`` (``"auto"``, ``"cpu"`` or ``"cuda"``).

    Raises:
        ValueError: ``device="cuda"`` but no CUDA device is visible.
    """
    if device == "cpu":
        return "faiss"
    if faiss.get_num_gpus() > 0:
        return "faiss-gpu"
    if cuda_available():
        return "torch"
    if device == "cuda":
        raise ValueError("device='cuda' but no CUDA device is visible; use 'auto'")
    return "faiss"


class VectorSearch:
    """A FAISS structure kept in step with a vector matrix, and the search paths over it.

    The structure holds the first :attr:`n_indexed` vectors; :meth:`sync` adds the rest
    (training first if needed). The GPU and torch copies are built on first use and
    dropped by :meth:`invalidate`, which the owner calls whenever its vectors change.

    Args:
        dim: Vector dimension.
        factory: FAISS factory string (no ``IDMap``).
        metric: ``"ip"`` or ``"l2"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        ef_search: HNSW search depth (``None``: :data:`DEFAULT_EF_SEARCH`).
        nprobe: IVF lists probed (``None``: :data:`DEFAULT_NPROBE`, capped at the lists).

    Raises:
        ValueError: an invalid factory string.
    """

    def __init__(self, dim: int, factory: str, metric: str, device: str, *,
                 ef_search: int | None = None, nprobe: int | None = None) -> None:
        self.dim, self.factory, self.metric, self.device = dim, factory, metric, device
        self.structure = self._new_structure()
        self.is_hnsw = isinstance(faiss.downcast_index(self.structure), faiss.IndexHNSW)
        try:
            self.nlist: int | None = int(faiss.extract_index_ivf(self.structure).nlist)
        except RuntimeError:
            self.nlist = None
        self.ef_search = (ef_search or DEFAULT_EF_SEARCH) if self.is_hnsw else None
        self.nprobe = min(nprobe or DEFAULT_NPROBE, self.nlist) if self.nlist else None
        self.n_indexed = 0  # vectors [0, n_indexed) are in the structure
        self.source: Path | None = None  # set while the structure is a view of a mapped file
        self.invalidate()

    def _new_structure(self) -> faiss.Index:
        try:
            return faiss.index_factory(self.dim, self.factory, METRICS[self.metric])
        except RuntimeError as exc:
            raise ValueError(f"invalid FAISS factory string {self.factory!r} "
                             f"(e.g. 'Flat', 'HNSW32', 'IVF64,Flat'): {exc}") from None

    def invalidate(self) -> None:
        """Drop the GPU and torch copies and the backend choice (the vectors changed)."""
        self._torch: TorchExactSearch | None = None
        self._gpu: Any = None
        self._backend: str | None = None

    def adopt(self, structure: faiss.Index, n_indexed: int, source: Path | None) -> None:
        """Use a structure read from disk (``source``: the file it is memory-mapped from)."""
        self.structure, self.n_indexed, self.source = structure, n_indexed, source

    def empty(self) -> None:
        """Empty the structure, keeping its training (it is refilled by :meth:`sync`)."""
        self._own()
        self.structure.reset()
        self.n_indexed = 0
        self.invalidate()

    def _own(self) -> None:
        """Replace a memory-mapped structure (read-only view) by an owned copy."""
        if self.source is not None:
            try:
                self.structure = faiss.read_index(str(self.source))
            except RuntimeError:
                self.structure = self._new_structure()
            if self.structure.ntotal != self.n_indexed:  # the file changed since loading
                self.structure.reset()
                self.n_indexed = 0
            self.source = None

    def sync(self, vectors: np.ndarray) -> None:
        """Add ``vectors[n_indexed:]`` to the structure, training it first if needed."""
        n = len(vectors)
        if self.n_indexed == n:
            return
        self._own()
        if not self.structure.is_trained:
            self._train(vectors)
        self.structure.add(np.ascontiguousarray(vectors[self.n_indexed:]))
        self.n_indexed = n

    def _train(self, vectors: np.ndarray) -> None:
        n = len(vectors)
        if self.nlist and n < self.nlist:
            raise ValueError(
                f"factory {self.factory!r} needs at least {self.nlist} vectors to train its "
                f"{self.nlist} lists but got {n}; add more documents first, or use 'Flat' "
                f"(exact) or 'HNSW32', which need no training")
        try:
            self.structure.train(np.ascontiguousarray(vectors))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1]
            raise ValueError(f"factory {self.factory!r} cannot be trained on {n} vectors "
                             f"({first}); add more documents or use 'Flat'") from None

    @property
    def backend(self) -> str:
        """``"faiss"``, ``"faiss-gpu"`` or ``"torch"`` (see the module docstring)."""
        if self._backend is None:
            self._backend = pick_backend(self.device)
        return self._backend

    def gpu_capable(self) -> bool:
        """Whether the structure has been (or can be) copied to the GPU with faiss."""
        if self._gpu is None:
            try:
                resources = faiss.StandardGpuResources()
                self._gpu = faiss.index_cpu_to_gpu(resources, 0, self.structure)
                self._gpu_resources = resources  # the GPU index lives only as long as these
            except (AttributeError, RuntimeError):
                self._gpu = False  # e.g. HNSW has no GPU version: stay on the CPU
        return self._gpu is not False

    def positions(self, vectors: np.ndarray, q: np.ndarray, k: int,
                  allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` positions ``(nq, k)`` (padded -1) and scores (padded -inf).

        ``allowed`` is a boolean per position with at least one ``True``, or ``None``; a
        disallowed position is never returned, whatever path ran.
        """
        pos, scores = self._positions(vectors, q, k, allowed)
        if allowed is not None:
            leaked = (pos >= 0) & ~allowed[np.maximum(pos, 0)]
            if leaked.any():  # belt and braces: drop them and close the gaps
                pos, scores = pos.copy(), scores.copy()
                pos[leaked], scores[leaked] = -1, -np.inf
                order = np.argsort(pos < 0, axis=1, kind="stable")
                pos = np.take_along_axis(pos, order, 1)
                scores = np.take_along_axis(scores, order, 1)
        return pos, scores

    def _positions(self, vectors: np.ndarray, q: np.ndarray, k: int,
                   allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "torch":
            if self._torch is None:
                self._torch = TorchExactSearch(vectors, self.metric, "cuda")
            return self._torch.search(q, k, allowed)
        subset = None if allowed is None else np.flatnonzero(allowed)
        n_allowed = len(vectors) if subset is None else len(subset)
        if subset is not None and n_allowed <= EXACT_SHARE * len(vectors):
            return exact_search(vectors, q, k, self.metric, subset)
        self.sync(vectors)
        result = self._faiss_search(q, k, allowed)
        if result is None:  # the structure takes no selector: scan the allowed subset
            return exact_search(vectors, q, k, self.metric, subset)
        pos, scores = result
        # An approximate structure can come back short (tight filter, few IVF lists
        # probed); those queries are answered exactly so every query gets min(k, n) hits.
        short = (pos >= 0).sum(axis=1) < min(k, n_allowed)
        if short.any():
            pos[short], scores[short] = exact_search(vectors, q[short], k, self.metric, subset)
        return pos, scores

    def _faiss_search(self, q: np.ndarray, k: int,
                      allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        if self.backend == "faiss-gpu" and allowed is None and self.gpu_capable():
            distances, pos = self._gpu.search(q, k)
        else:
            params, bitmap = None, None
            if self.is_hnsw:
                params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
                params.efSearch = max(int(self.ef_search or DEFAULT_EF_SEARCH), k)
            elif self.nlist:
                params = faiss.SearchParametersIVF()
                params.nprobe = int(self.nprobe or 1)
            if allowed is not None:
                bitmap = np.packbits(allowed, bitorder="little")  # kept alive for the call
                params = params or faiss.SearchParameters()
                params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
            try:
                distances, pos = self.structure.search(q, k, params=params)
            except RuntimeError:
                if allowed is None:
                    raise
                return None
        pos = pos.astype(np.int64, copy=False)
        scores = (-distances if self.metric == "l2" else distances).astype(np.float32)
        scores[pos < 0] = -np.inf
        return pos, scores

    def describe(self) -> dict[str, Any]:
        """The search parameters and faiss version recorded in ``vectors.json``."""
        hnsw: Any = faiss.downcast_index(self.structure) if self.is_hnsw else None
        return {"ef_search": self.ef_search, "nprobe": self.nprobe, "nlist": self.nlist,
                "ef_construction": int(hnsw.hnsw.efConstruction) if hnsw is not None else None,
                "faiss_version": faiss.__version__}
