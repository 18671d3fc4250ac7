"""Protocols for the pluggable parts the index layer builds on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into vectors; queries and documents may be encoded differently.

    Attributes:
        model_id: The model's hub id or local path, recorded in index manifests.
        dim: Vector dimension.
        similarity: ``"cosine"`` (vectors come back L2-normalised) or ``"dot"``.
    """

    model_id: str
    dim: int
    similarity: str

    def encode_query(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode queries into a float32 array of shape ``(len(texts), dim)``."""
        ...

    def encode_document(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode documents into a float32 array of shape ``(len(texts), dim)``."""
        ...

    def describe(self) -> Mapping[str, Any]:
        """JSON-serialisable description for the manifest (model id, dim, prompts, ...)."""
        ...
