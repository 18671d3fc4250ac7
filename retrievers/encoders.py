"""Text encoders behind the :class:`~pursuit.indexes.protocols.Encoder` protocol.

* :class:`SentenceTransformerEncoder`: any sentence-transformers model; the packaged
  all-MiniLM-L6-v2 by default, so it works offline.
* :class:`KeywordEncoder`: counts of a fixed vocabulary, L2-normalised. Its rankings are
  known exactly, which makes it the encoder of tests and examples.

Example:
    >>> enc = KeywordEncoder(["tide", "moon", "sun"])
    >>> enc.encode_query(["the moon and the tide"]).astype(float).round(3).tolist()
    [[0.707, 0.707, 0.0]]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pursuit.retrievers.lm.dtypes import cpu_flags, dtype_name, resolve_dtype
from pursuit.retrievers.lm.weights import (
    ModelNotFoundError,
    canonical_encoder_id,
    resolve_encoder_path,
)

_TOKEN = re.compile(r"\w+")


class SentenceTransformerEncoder:
    """A sentence-transformers model as an :class:`~pursuit.indexes.protocols.Encoder`.

    The model loads when the encoder is constructed, not on first use: ``dim`` must be
    known at once (index building and manifest checks read it), and a missing model should
    fail where it is named rather than in the middle of a search.

    Queries and documents are encoded with the model's own ``"query"`` and
    ``"document"``/``"passage"``/``"corpus"`` prompts when its configuration defines
    them (sentence-transformers' ``encode_query`` / ``encode_document``).

    Args:
        model: ``None`` for the packaged all-MiniLM-L6-v2, a hub id, or a local folder.
        device: ``"auto"`` (CUDA when available, else what sentence-transformers picks),
            or a torch device string such as ``"cpu"`` or ``"cuda:0"``.
        batch_size: Texts per forward pass.
        dtype: Weights and activations: ``"auto"`` (bfloat16 on CUDA GPUs and CPUs with
            native bf16, else float32), ``"float32"``, ``"bfloat16"`` or ``"float16"``
            (see :func:`~pursuit.retrievers.lm.dtypes.resolve_dtype`; both dtypes' quality and
            speed: ``bench/dense.py``, BENCHMARKS.md). Vectors always come
            back float32, and the dtype is not part of ``model_id``: an index built in one
            dtype can be searched with queries encoded in another.
        normalize: L2-normalise the vectors; ``None`` follows the model (normalised when
            its similarity function is cosine). Normalised vectors report ``"cosine"``.

    Raises:
        DtypeError: ``dtype`` is not a dtype option (a ``ValueError`` too).
        ModelNotFoundError: the model is neither packaged, on disk, nor loadable from the
            hub (offline runs load hub ids from the local cache only).

    Example:
        >>> enc = SentenceTransformerEncoder()  # doctest: +SKIP
        >>> enc.encode_query(["what causes tides?"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(self, model: str | None = None, *, device: str = "auto", batch_size: int = 64,
                 dtype: str = "auto", normalize: bool | None = None) -> None:
        dtype_name(dtype)  # before the slow imports: a typo fails at once
        # Imported here: sentence-transformers takes seconds to import, and code that
        # only needs the KeywordEncoder (tests, examples) should not pay for it.
        from sentence_transformers import SentenceTransformer

        self.model_id = canonical_encoder_id(model)
        self.path = resolve_encoder_path(model)
        self.batch_size = batch_size
        try:
            self.model = SentenceTransformer(self.path, device=None if device == "auto" else device)
        except OSError as exc:
            raise ModelNotFoundError(
                f"cannot load the encoder {self.model_id!r} from {self.path!r}: it is not a local "
                "folder and not in the Hugging Face cache (no hub downloads happen offline); pass "
                "a local folder, or leave the model unset for the packaged all-MiniLM-L6-v2"
            ) from exc
        # Cast after loading rather than through model_kwargs: "auto" depends on the device,
        # known only once sentence-transformers has placed the model.
        torch_dtype = resolve_dtype(dtype, self.model.device)
        self.dtype: str = dtype_name(torch_dtype)
        self.model.to(torch_dtype)
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise ValueError(f"the encoder {self.model_id!r} does not report its vector dimension")
        self.dim: int = int(dim)
        native = str(self.model.similarity_fn_name or "cosine")
        self.normalize = native == "cosine" if normalize is None else normalize
        self.similarity: str = "cosine" if self.normalize else "dot"
        self.prompts: dict[str, str] = {k: v for k, v in dict(self.model.prompts).items() if v}

    def _encode(self, texts: Sequence[str], role: str, show_progress: bool) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        method = self.model.encode_query if role == "query" else self.model.encode_document
        # Normalised here in float32 rather than by sentence-transformers in the model's
        # dtype: bf16 rounding would leave norms up to ~0.4% off 1.
        out = method(list(texts), batch_size=self.batch_size, show_progress_bar=show_progress,
                     convert_to_numpy=True)
        vectors = np.ascontiguousarray(np.asarray(out, dtype=np.float32))
        if self.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            np.divide(vectors, norms, out=vectors, where=norms > 0)
        return vectors

    def encode_query(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode queries into float32 ``(len(texts), dim)``, with the model's query prompt."""
        return self._encode(texts, "query", show_progress)

    def encode_document(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode documents into float32 ``(len(texts), dim)``, with its document prompt."""
        return self._encode(texts, "document", show_progress)

    def describe(self) -> Mapping[str, Any]:
        """What an index manifest records about this encoder."""
        return {
            "kind": "sentence-transformers",
            "model_id": self.model_id,
            "path": self.path,
            "dim": self.dim,
            "similarity": self.similarity,
            "normalize": self.normalize,
            "dtype": self.dtype,
            "cpu_flags": cpu_flags() if self.model.device.type == "cpu" else [],
            "prompts": dict(self.prompts),
            "max_seq_length": self.model.max_seq_length,
        }

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder({self.model_id!r}, dim={self.dim}, dtype={self.dtype!r})"


class KeywordEncoder:
    """Counts of each vocabulary word in the text (lower-cased ``\\w+`` tokens), L2-normalised.

    Cosine similarity between two texts is then the cosine of their vocabulary counts, so
    test rankings can be worked out by hand. A text with no vocabulary word encodes to the
    zero vector (score 0 against everything).

    Args:
        vocabulary: The words, one dimension each, in order; lower-case, no duplicates.

    Example:
        >>> enc = KeywordEncoder(["cat", "dog"])
        >>> enc.encode_document(["Dog dog cat", "fish"]).astype(float).round(3).tolist()
        [[0.447, 0.894], [0.0, 0.0]]
    """

    similarity = "cosine"

    def __init__(self, vocabulary: Sequence[str]) -> None:
        words = [w.lower() for w in vocabulary]
        if not words:
            raise ValueError("KeywordEncoder needs at least one vocabulary word")
        dupes = sorted({w for w in words if words.count(w) > 1})
        if dupes:
            raise ValueError(f"KeywordEncoder vocabulary has duplicates: {', '.join(dupes)}")
        self.vocabulary = tuple(words)
        self._index = {w: i for i, w in enumerate(words)}
        self.dim = len(words)
        self.model_id = "keyword:" + ",".join(words)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                j = self._index.get(token)
                if j is not None:
                    out[i, j] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=out, where=norms > 0)

    def encode_query(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode queries into float32 ``(len(texts), dim)``."""
        return self._encode(texts)

    def encode_document(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode documents into float32 ``(len(texts), dim)`` (same as queries)."""
        return self._encode(texts)

    def describe(self) -> Mapping[str, Any]:
        """What an index manifest records about this encoder."""
        return {"kind": "keyword", "model_id": self.model_id, "dim": self.dim,
                "similarity": self.similarity, "normalize": True, "prompts": {},
                "vocabulary": list(self.vocabulary)}

    def __repr__(self) -> str:
        return f"KeywordEncoder({list(self.vocabulary)!r})"
