"""Vector indexes: the :class:`VectorStore` protocol and its FAISS implementation.

Documents are identified by their document-store row (an int64). A vector folder holds::

    DIR/vectors.json   format version, FAISS factory string, metric, search parameters
    DIR/index.faiss    the FAISS structure (memory-mapped on load)
    DIR/vectors.npy    the raw float32 vectors, in structure order (memory-mapped on load)
    DIR/rows.npy       the document-store row of each vector

Keeping the raw vectors means the structure can be rebuilt (after a removal, or with
another factory string) without encoding the corpus again.

Example:
    >>> import numpy as np
    >>> index = FaissIndex(2, factory="Flat")
    >>> index.add(np.array([[1, 0], [0, 1]], dtype=np.float32), np.array([10, 20]))
    >>> index.search(np.array([[0.9, 0.1]], dtype=np.float32), k=2)[0].tolist()
    [[10, 20]]
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import faiss
import numpy as np

from pursuit.indexes.exact import TorchExactSearch, exact_search
from pursuit.indexes.vectorfiles import (
    CONFIG_NAME,
    FORMAT,
    FORMAT_VERSION,
    ROWS_NAME,
    STRUCTURE_NAME,
    VECTORS_NAME,
    read_folder,
    write_array,
)

METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
#: HNSW search depth; 128 gives recall@10 >= 0.98 on SciFact with MiniLM (bench/dense.py).
DEFAULT_EF_SEARCH = 128
#: IVF lists probed per query (capped at the number of lists).
DEFAULT_NPROBE = 16
# A filtered search goes exact when at most this share of the vectors passes the filter:
# the subset is small enough to scan, and ANN graphs recall poorly under tight filters.
_EXACT_SHARE = 0.125


@runtime_checkable
class VectorStore(Protocol):
    """A vector index keyed by document-store rows.

    Scores are "higher is better" (inner product, or negative squared L2 distance).
    """

    dim: int
    metric: str

    def __len__(self) -> int:
        """Number of vectors held."""
        ...

    def add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Add ``(n, dim)`` vectors for ``rows``; rows already present are replaced."""
        ...

    def remove(self, rows: np.ndarray) -> int:
        """Remove the vectors of ``rows``; returns how many were present."""
        ...

    def search(self, queries: np.ndarray, k: int,
               mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows ``(nq, k)`` int64 (padded -1) and scores float32 (padded -inf).

        ``mask`` is a boolean array over document-store rows; rows where it is ``False``
        are never returned.
        """
        ...

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows``, ``(len(rows), dim)`` float32."""
        ...

    def save(self, directory: str | Path) -> None:
        """Write the index into ``directory`` (created if missing)."""
        ...

    def describe(self) -> Mapping[str, Any]:
        """JSON-serialisable configuration, recorded in index manifests."""
        ...


def _cuda_available() -> bool:
    # Importing torch just to learn there is no GPU costs ~2 s; without the NVIDIA
    # driver's control device there is no CUDA GPU to find.
    if "torch" not in sys.modules and not os.path.exists("/dev/nvidiactl"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class FaissIndex:
    """A FAISS index over document-store rows, configured by a factory string.

    Any factory without an ``IDMap`` works (``"Flat"``, ``"HNSW32"``, ``"IVF64,Flat"``,
    ``"IVF64,PQ16"``, ...). Training (IVF, PQ) happens on all vectors held, at the first
    search or save. Searches run on the GPU when faiss sees one; on a CUDA machine whose
    faiss has no GPU support they run exactly with torch matrix products there.

    Args:
        dim: Vector dimension.
        factory: FAISS factory string.
        metric: ``"ip"`` (inner product; cosine for normalised vectors) or ``"l2"``.
        ef_search: HNSW search depth (default :data:`DEFAULT_EF_SEARCH`; raised to ``k``
            when a search asks for more).
        nprobe: IVF lists probed per query (default :data:`DEFAULT_NPROBE`).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Example:
        >>> index = FaissIndex(384, factory="HNSW32")  # doctest: +SKIP
        >>> index.add(encoder.encode_document(texts), rows)  # doctest: +SKIP
        >>> index.save("my-index/dense")  # doctest: +SKIP
    """

    def __init__(self, dim: int, factory: str = "Flat", metric: str = "ip", *,
                 ef_search: int | None = None, nprobe: int | None = None,
                 device: str = "auto") -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        if "idmap" in factory.lower():
            raise ValueError(f"factory {factory!r}: leave out IDMap, FaissIndex maps rows itself")
        self.dim, self.factory, self.metric, self.device = int(dim), factory, metric, device
        self._structure = self._new_structure()
        self.is_hnsw = isinstance(faiss.downcast_index(self._structure), faiss.IndexHNSW)
        try:
            self.nlist: int | None = int(faiss.extract_index_ivf(self._structure).nlist)
        except RuntimeError:
            self.nlist = None
        self.ef_search = (ef_search or DEFAULT_EF_SEARCH) if self.is_hnsw else None
        self.nprobe = min(nprobe or DEFAULT_NPROBE, self.nlist) if self.nlist else None
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)
        self._rows = np.zeros(0, dtype=np.int64)
        self._n_indexed = 0  # vectors [0, _n_indexed) are in the structure
        self._source: Path | None = None  # set when the structure is a view of a mapped file
        self._invalidate()

    def _new_structure(self) -> faiss.Index:
        try:
            return faiss.index_factory(self.dim, self.factory, METRICS[self.metric])
        except RuntimeError as exc:
            raise ValueError(f"invalid FAISS factory string {self.factory!r} "
                             f"(e.g. 'Flat', 'HNSW32', 'IVF64,Flat'): {exc}") from None

    def _invalidate(self) -> None:
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        self._torch: TorchExactSearch | None = None
        self._gpu: Any = None
        self._backend: str | None = None

    def __len__(self) -> int:
        return len(self._rows)

    # Changing ---------------------------------------------------------------------
    def add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Add vectors for document-store ``rows``; rows already present are replaced.

        Raises:
            ValueError: wrong shape, non-finite values, negative or repeated rows.
        """
        v = np.asarray(vectors, dtype=np.float32)
        r = np.asarray(rows, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape (n, {self.dim}), got {v.shape}")
        if r.shape != (len(v),):
            raise ValueError(f"rows must have shape ({len(v)},) to match the vectors, got {r.shape}")
        if not np.isfinite(v).all():
            raise ValueError("vectors contain NaN or infinite values")
        if (r < 0).any():
            raise ValueError("rows must be non-negative document-store rows")
        if len(np.unique(r)) != len(r):
            raise ValueError("rows repeat within one add(); give each row one vector")
        self.remove(r)
        self._vectors = np.concatenate([self._vectors, v])
        self._rows = np.concatenate([self._rows, r])
        self._invalidate()

    def remove(self, rows: np.ndarray) -> int:
        """Remove the vectors of ``rows``; returns how many were present.

        Works for every factory: the structure is emptied (keeping its training) and
        refilled from the stored vectors at the next search or save.
        """
        keep = ~np.isin(self._rows, np.asarray(rows, dtype=np.int64))
        removed = int(len(keep) - keep.sum())
        if removed:
            self._vectors, self._rows = self._vectors[keep], self._rows[keep]
            self._own_structure()
            self._structure.reset()
            self._n_indexed = 0
            self._invalidate()
        return removed

    def _own_structure(self) -> None:
        """Replace a memory-mapped structure (read-only view) by an owned copy."""
        if self._source is not None:
            try:
                self._structure = faiss.read_index(str(self._source))
            except RuntimeError:
                self._structure = self._new_structure()
            if self._structure.ntotal != self._n_indexed:  # the file changed since loading
                self._structure.reset()
                self._n_indexed = 0
            self._source = None

    def _ensure_structure(self) -> None:
        n = len(self._rows)
        if self._n_indexed == n:
            return
        self._own_structure()
        if not self._structure.is_trained:
            self._train()
        self._structure.add(np.ascontiguousarray(self._vectors[self._n_indexed:]))
        self._n_indexed = n

    def _train(self) -> None:
        n = len(self._vectors)
        if self.nlist and n < self.nlist:
            raise ValueError(
                f"factory {self.factory!r} needs at least {self.nlist} vectors to train its "
                f"{self.nlist} lists but got {n}; add more documents first, or use 'Flat' "
                f"(exact) or 'HNSW32', which need no training")
        try:
            self._structure.train(np.ascontiguousarray(self._vectors))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1]
            raise ValueError(f"factory {self.factory!r} cannot be trained on {n} vectors "
                             f"({first}); add more documents or use 'Flat'") from None

    # Searching --------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int,
               mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows and scores for each query; one call for all queries.

        Args:
            queries: ``(nq, dim)`` float32 (a single ``(dim,)`` vector is taken as one query).
            k: Results per query.
            mask: Boolean over document-store rows (length ``DocStore.n_rows``); rows where
                it is ``False`` are never returned, whatever the structure.

        Returns:
            ``(rows, scores)``: ``(nq, k)`` int64 rows padded with -1 and float32 scores
            padded with -inf, best first.
        """
        q = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (nq, {self.dim}), got {q.shape}")
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        n = len(self._rows)
        allowed = None
        if mask is not None and n:
            mask = np.asarray(mask, dtype=bool)
            top_row = int(self._rows.max())
            if mask.ndim != 1 or len(mask) <= top_row:
                raise ValueError(f"mask must be a 1-d boolean array over document-store rows of "
                                 f"length > {top_row} (build it with DocStore.mask(filter)), "
                                 f"got shape {mask.shape}")
            allowed = mask[self._rows]
            if allowed.all():
                allowed = None
        if n == 0 or len(q) == 0 or (allowed is not None and not allowed.any()):
            return (np.full((len(q), k), -1, dtype=np.int64),
                    np.full((len(q), k), -np.inf, dtype=np.float32))
        pos, scores = self._search_positions(q, k, allowed)
        if allowed is not None:
            # Belt and braces: whatever path ran, a filtered-out row never gets through.
            leaked = (pos >= 0) & ~allowed[np.maximum(pos, 0)]
            if leaked.any():
                pos, scores = pos.copy(), scores.copy()
                pos[leaked], scores[leaked] = -1, -np.inf
                order = np.argsort(pos < 0, axis=1, kind="stable")
                pos = np.take_along_axis(pos, order, 1)
                scores = np.take_along_axis(scores, order, 1)
        return np.where(pos >= 0, self._rows[np.maximum(pos, 0)], -1), scores

    def _search_positions(self, q: np.ndarray, k: int,
                          allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        backend = self._pick_backend()
        if backend == "torch":
            if self._torch is None:
                self._torch = TorchExactSearch(self._vectors, self.metric, "cuda")
            return self._torch.search(q, k, allowed)
        n_allowed = len(self._rows) if allowed is None else int(allowed.sum())
        if allowed is not None and n_allowed <= _EXACT_SHARE * len(self._rows):
            return exact_search(self._vectors, q, k, self.metric, np.flatnonzero(allowed))
        self._ensure_structure()
        result = self._faiss_search(q, k, allowed, gpu=backend == "faiss-gpu")
        if result is None:  # the structure takes no selector: scan the allowed subset
            assert allowed is not None
            return exact_search(self._vectors, q, k, self.metric, np.flatnonzero(allowed))
        pos, scores = result
        # An approximate structure can come back short (tight filter, few IVF lists
        # probed); those queries are answered exactly so every query gets min(k, n) hits.
        short = (pos >= 0).sum(axis=1) < min(k, n_allowed)
        if short.any():
            subset = None if allowed is None else np.flatnonzero(allowed)
            pos[short], scores[short] = exact_search(self._vectors, q[short], k, self.metric, subset)
        return pos, scores

    def _faiss_search(self, q: np.ndarray, k: int, allowed: np.ndarray | None,
                      gpu: bool) -> tuple[np.ndarray, np.ndarray] | None:
        if gpu and allowed is None and self.is_gpu_capable():
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
                bitmap = np.packbits(allowed, bitorder="little")
                params = params or faiss.SearchParameters()
                params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
            try:
                distances, pos = self._structure.search(q, k, params=params)
            except RuntimeError:
                if allowed is None:
                    raise
                return None
        pos = pos.astype(np.int64, copy=False)
        scores = (-distances if self.metric == "l2" else distances).astype(np.float32)
        scores[pos < 0] = -np.inf
        return pos, scores

    def _pick_backend(self) -> str:
        if self._backend is None:
            if self.device == "cpu":
                self._backend = "faiss"
            elif faiss.get_num_gpus() > 0:
                self._backend = "faiss-gpu"
            elif self.device == "cuda" or _cuda_available():
                if not _cuda_available():
                    raise ValueError("device='cuda' but no CUDA device is visible; use 'auto'")
                self._backend = "torch"
            else:
                self._backend = "faiss"
        return self._backend

    def is_gpu_capable(self) -> bool:
        """Whether the structure has been (or can be) copied to the GPU with faiss."""
        if self._gpu is None:
            try:
                resources = faiss.StandardGpuResources()
                self._gpu = faiss.index_cpu_to_gpu(resources, 0, self._structure)
                self._gpu_resources = resources  # the GPU index lives only as long as these
            except (AttributeError, RuntimeError):
                self._gpu = False  # e.g. HNSW has no GPU version: stay on the CPU
        return self._gpu is not False

    # Reading ----------------------------------------------------------------------
    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows``, ``(len(rows), dim)`` float32.

        Raises:
            KeyError: some rows have no vector (names the first few).
        """
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self._sorted is None:
            order = np.argsort(self._rows, kind="stable")
            self._sorted = (order, self._rows[order])
        order, sorted_rows = self._sorted
        at = np.minimum(np.searchsorted(sorted_rows, r), max(len(sorted_rows) - 1, 0))
        found = (at < len(sorted_rows)) & (sorted_rows[at] == r) if len(sorted_rows) else r < -1
        if not found.all():
            raise KeyError(f"rows without a vector in this index: {r[~found][:10].tolist()}")
        return np.array(self._vectors[order[at]], dtype=np.float32)

    def rows(self) -> np.ndarray:
        """The document-store rows held, in structure order."""
        return self._rows

    def describe(self) -> dict[str, Any]:
        """The configuration recorded in ``vectors.json`` and in index manifests."""
        hnsw: Any = faiss.downcast_index(self._structure) if self.is_hnsw else None
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "factory": self.factory,
            "metric": self.metric, "dim": self.dim, "count": len(self),
            "score": "inner product" if self.metric == "ip" else "negative squared L2",
            "ef_search": self.ef_search, "nprobe": self.nprobe, "nlist": self.nlist,
            "ef_construction": int(hnsw.hnsw.efConstruction) if hnsw is not None else None,
            "faiss_version": faiss.__version__,
        }

    # Files ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write the folder; ``vectors.json`` goes last, so a half-written folder is refused.

        Each file is written beside its target and renamed into place, so saving over the
        folder this index was memory-mapped from is safe.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._ensure_structure()
        tmp = d / f".{STRUCTURE_NAME}.tmp"
        faiss.write_index(self._structure, str(tmp))
        os.replace(tmp, d / STRUCTURE_NAME)
        write_array(d, VECTORS_NAME, self._vectors)
        write_array(d, ROWS_NAME, self._rows)
        tmp = d / f".{CONFIG_NAME}.tmp"
        tmp.write_text(json.dumps(self.describe(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, d / CONFIG_NAME)

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = True, factory: str | None = None,
             device: str = "auto") -> FaissIndex:
        """Open a folder written by :meth:`save`.

        Args:
            directory: The folder.
            mmap: Memory-map the structure and the vectors instead of reading them.
            factory: Another factory string: rebuild the structure from the stored vectors
                (no re-encoding); also the way to recover a damaged ``index.faiss``.
            device: As in the constructor.

        Raises:
            IndexError_: a missing or damaged file; the message names it and the rebuild
                command.

        Example:
            >>> index = FaissIndex.load("my-index/dense")  # doctest: +SKIP
        """
        d = Path(directory)
        config, vectors, rows, structure = read_folder(d, mmap=mmap, read_structure=factory is None)
        same = factory is None or factory == config["factory"]
        index = cls(int(config["dim"]), factory or config["factory"], config["metric"],
                    ef_search=config.get("ef_search") if same else None,
                    nprobe=config.get("nprobe") if same else None, device=device)
        index._vectors, index._rows = vectors, rows
        if structure is not None:
            index._structure, index._n_indexed = structure, len(rows)
            index._source = d / STRUCTURE_NAME if mmap else None
        return index

    def __repr__(self) -> str:
        return f"FaissIndex({self.factory!r}, metric={self.metric!r}, dim={self.dim}, n={len(self)})"


__all__ = ["DEFAULT_EF_SEARCH", "DEFAULT_NPROBE", "FaissIndex", "VectorStore"]
