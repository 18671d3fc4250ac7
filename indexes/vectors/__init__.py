"""Dense vectors of an index: the :class:`VectorStore` protocol, FAISS behind it, its files.

- :mod:`~pursuit.indexes.vectors.store`: :class:`FaissIndex` (flat, IVF or HNSW by size).
- :mod:`~pursuit.indexes.vectors.structure`: the FAISS structure and its CPU/GPU backend.
- :mod:`~pursuit.indexes.vectors.files`: reading and writing a vector folder.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "VectorStore": "pursuit.indexes.vectors.store",
    "FaissIndex": "pursuit.indexes.vectors.store",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
