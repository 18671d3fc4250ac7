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

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pursuit.indexes.vectors.files import (
    FORMAT,
    FORMAT_VERSION,
    STRUCTURE_NAME,
    read_vector_folder,
    write_vector_folder,
)
from pursuit.indexes.vectors.structure import (
    DEFAULT_EF_SEARCH,
    DEFAULT_NPROBE,
    METRICS,
    VectorSearch,
)


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
        self._search = VectorSearch(self.dim, factory, metric, device, ef_search=ef_search,
                                    nprobe=nprobe)
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)
        self._rows = np.zeros(0, dtype=np.int64)
        self._invalidate()

    def _invalidate(self) -> None:
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        self._search.invalidate()

    @property
    def ef_search(self) -> int | None:
        """HNSW search depth (``None`` for other structures)."""
        return self._search.ef_search

    @property
    def nprobe(self) -> int | None:
        """IVF lists probed per query (``None`` for other structures)."""
        return self._search.nprobe

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
            self._search.empty()
            self._invalidate()
        return removed

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
        pos, scores = self._search.positions(self._vectors, q, k, allowed)
        return np.where(pos >= 0, self._rows[np.maximum(pos, 0)], -1), scores

    def is_gpu_capable(self) -> bool:
        """Whether the structure has been (or can be) copied to the GPU with faiss."""
        return self._search.gpu_capable()

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
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "factory": self.factory,
            "metric": self.metric, "dim": self.dim, "count": len(self),
            "score": "inner product" if self.metric == "ip" else "negative squared L2",
            **self._search.describe(),
        }

    # Files ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write the folder; ``vectors.json`` goes last, so a half-written folder is refused.

        Each file is written beside its target and renamed into place, so saving over the
        folder this index was memory-mapped from is safe.
        """
        self._search.sync(self._vectors)
        write_vector_folder(Path(directory), self._search.structure, self._vectors,
                            self._rows, self.describe())

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
        config, vectors, rows, structure = read_vector_folder(d, mmap=mmap,
                                                              read_structure=factory is None)
        same = factory is None or factory == config["factory"]
        index = cls(int(config["dim"]), factory or config["factory"], config["metric"],
                    ef_search=config.get("ef_search") if same else None,
                    nprobe=config.get("nprobe") if same else None, device=device)
        index._vectors, index._rows = vectors, rows
        if structure is not None:
            index._search.adopt(structure, len(rows), d / STRUCTURE_NAME if mmap else None)
        return index

    def __repr__(self) -> str:
        return f"FaissIndex({self.factory!r}, metric={self.metric!r}, dim={self.dim}, n={len(self)})"


__all__ = ["DEFAULT_EF_SEARCH", "DEFAULT_NPROBE", "FaissIndex", "VectorStore"]
