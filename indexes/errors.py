"""Errors that tell the user what is wrong and what to do about it."""

from __future__ import annotations

from pathlib import Path


class PursuitError(Exception):
    """Base class of every error pursuit raises on purpose. Its message is shown as-is."""


class FormatError(PursuitError, ValueError):
    """Malformed input data; names the file and, where it applies, the line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path, self.line = str(path), line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class IndexError_(PursuitError):
    """An index directory that cannot be used as it is (damaged, mismatched, missing)."""


class MissingDependencyError(PursuitError, ImportError):
    """An optional dependency is not installed; names the extra that installs it."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'pursuit[{extra}]'"
        )
