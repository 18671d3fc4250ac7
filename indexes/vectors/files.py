"""Reading and writing the files of a vector folder, with errors that say what to do.

See :mod:`pursuit.indexes.vectors.store` for the layout. Every problem found while reading names
the file and the command that rebuilds the index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from pursuit.indexes.errors import IndexError_
from pursuit.indexes.manifest import MANIFEST_NAME, rebuild_hint

FORMAT = "pursuit-vectors"
FORMAT_VERSION = 1
CONFIG_NAME, STRUCTURE_NAME, VECTORS_NAME, ROWS_NAME = (
    "vectors.json", "index.faiss", "vectors.npy", "rows.npy")
_REQUIRED = ("format_version", "factory", "metric", "dim", "count")


def _rebuild_hint(directory: Path) -> str:
    """:func:`~pursuit.indexes.manifest.rebuild_hint` for the index that holds the vector
    folder ``directory`` (the folder itself when it stands alone)."""
    index_dir = directory.parent if (directory.parent / MANIFEST_NAME).exists() else directory
    return rebuild_hint(index_dir)


def write_array(directory: Path, name: str, array: np.ndarray) -> None:
    """Save ``array`` as ``directory/name`` through a temporary file and a rename.

    The rename leaves a memory map of the old file valid, which truncating in place
    would not.
    """
    tmp = directory / f".{name}.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))
    os.replace(tmp, directory / name)


def write_vector_folder(d: Path, structure: Any, vectors: np.ndarray, rows: np.ndarray,
                        config: dict[str, Any]) -> None:
    """Write a vector folder; ``vectors.json`` goes last, so a half-written folder is refused.

    Each file is written beside its target and renamed into place, so saving over the
    folder an index was memory-mapped from is safe.
    """
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{STRUCTURE_NAME}.tmp"
    faiss.write_index(structure, str(tmp))
    os.replace(tmp, d / STRUCTURE_NAME)
    write_array(d, VECTORS_NAME, vectors)
    write_array(d, ROWS_NAME, rows)
    tmp = d / f".{CONFIG_NAME}.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, d / CONFIG_NAME)


def _read_config(d: Path) -> dict[str, Any]:
    path = d / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexError_(f"{path} is missing, so {d} is not a vector index (or its save never "
                          f"finished); {_rebuild_hint(d)}") from None
    except (OSError, ValueError) as exc:
        raise IndexError_(f"{path} is damaged ({exc}); {_rebuild_hint(d)}") from None
    if not isinstance(config, dict):
        raise IndexError_(f"{path} is damaged (not a JSON object); {_rebuild_hint(d)}")
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise IndexError_(f"{path} is damaged (missing {', '.join(missing)}); {_rebuild_hint(d)}")
    if config["format_version"] != FORMAT_VERSION:
        raise IndexError_(f"{path} has format version {config['format_version']}, this pursuit "
                          f"reads version {FORMAT_VERSION}; {_rebuild_hint(d)}")
    return config


def _read_array(path: Path, mmap: bool, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    d = path.parent
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise IndexError_(f"{path} is missing, the vector index is damaged; "
                          f"{_rebuild_hint(d)}") from None
    except (OSError, ValueError) as exc:
        raise IndexError_(f"{path} is damaged ({exc}); {_rebuild_hint(d)}") from None
    if array.dtype != dtype or array.shape != shape:
        raise IndexError_(f"{path} holds {array.dtype} {array.shape}, expected "
                          f"{np.dtype(dtype)} {shape} as {d / CONFIG_NAME} says; "
                          f"the vector index is damaged; {_rebuild_hint(d)}")
    return array


def read_vector_folder(d: Path, *, mmap: bool, read_structure: bool
                       ) -> tuple[dict[str, Any], np.ndarray, np.ndarray, Any]:
    """Read and check a vector folder.

    Returns:
        ``(config, vectors, rows, structure)``; ``structure`` is the FAISS index, memory
        mapped when ``mmap`` (a read-only view), or ``None`` when not ``read_structure``.

    Raises:
        IndexError_: a file is missing, unreadable, or disagrees with ``vectors.json``.
    """
    config = _read_config(d)
    count, dim = int(config["count"]), int(config["dim"])
    vectors = _read_array(d / VECTORS_NAME, mmap, np.float32, (count, dim))
    rows = _read_array(d / ROWS_NAME, mmap, np.int64, (count,))
    if not read_structure:
        return config, vectors, rows, None
    path = d / STRUCTURE_NAME
    if not path.exists():
        raise IndexError_(f"{path} is missing, the vector index is damaged; {_rebuild_hint(d)}, "
                          f"or rebuild the structure from {VECTORS_NAME} with "
                          f"FaissIndex.load({str(d)!r}, factory={config['factory']!r})")
    flags = (faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY) if mmap else 0
    try:
        structure = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise IndexError_(f"{path} is damaged ({detail}); {_rebuild_hint(d)}, or rebuild the "
                          f"structure from {VECTORS_NAME} with FaissIndex.load({str(d)!r}, "
                          f"factory={config['factory']!r})") from None
    if structure.ntotal != count or structure.d != dim:
        raise IndexError_(f"{path} holds {structure.ntotal} vectors of dimension {structure.d}, "
                          f"but {d / CONFIG_NAME} says {count} of dimension {dim}; the vector "
                          f"index is damaged; {_rebuild_hint(d)}")
    return config, vectors, rows, structure
