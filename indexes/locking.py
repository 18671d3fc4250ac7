"""One writer at a time: an exclusive lock per index directory, and the clean-up it allows.

Every change to an index (build into an existing folder, add, delete, add vectors, events)
copies the index, changes the copy and renames it into place. Two such writers at once would
each start from the same index, and the last rename would drop the other's change. So each
writer holds :class:`IndexLock` from before it reads the index until its rename is done.

The lock is ``flock`` on ``.NAME.lock`` beside the index (not inside it: the directory is
replaced by each write). The kernel releases it when its process ends, however it ends, so a
writer killed with ``kill -9`` never blocks the next one. The file keeps the holder's pid, so
a waiting writer can say whom it waits for. Under the lock, staging folders
(``.NAME.building-PID``, ``.NAME.old-PID``) left by writers that died are removed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from pursuit.indexes.errors import PursuitError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock is taken (see IndexLock)
    fcntl = None  # type: ignore[assignment]

__all__ = ["IndexBusyError", "IndexLock", "lock_path", "remove_dead_staging"]


class IndexBusyError(PursuitError):
    """Another process is writing the index and the caller asked not to wait."""


def lock_path(index_dir: str | Path) -> Path:
    """The lock file of ``index_dir``: ``.NAME.lock`` in the same parent folder."""
    index_dir = Path(index_dir)
    return index_dir.with_name(f".{index_dir.name}.lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_dead_staging(index_dir: str | Path) -> list[Path]:
    """Remove staging folders of ``index_dir`` whose writer process is gone.

    Call it only while holding the index's lock. Returns the folders removed.
    """
    index_dir = Path(index_dir)
    if not index_dir.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(index_dir.name)}\.(building|old)-(\d+)$")
    removed = []
    for entry in index_dir.parent.iterdir():
        match = pattern.match(entry.name)
        if match and int(match.group(2)) != os.getpid() and not _alive(int(match.group(2))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class IndexLock:
    """The exclusive writer lock of one index directory (a context manager).

    Args:
        index_dir: The index directory (it need not exist yet).
        wait: Wait for another writer to finish; ``False`` raises :class:`IndexBusyError`.
        on_wait: Called once with a message when the lock is taken and this writer waits.

    Example:
        >>> with IndexLock("my-index", on_wait=print):  # doctest: +SKIP
        ...     ...  # read, change and replace the index
    """

    def __init__(self, index_dir: str | Path, *, wait: bool = True,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.index_dir = Path(index_dir)
        self.wait, self.on_wait = wait, on_wait
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            pid = lock_path(self.index_dir).read_text(encoding="utf-8").strip()
        except OSError:
            pid = ""
        return f"process {pid}" if pid.isdigit() else "another process"

    def __enter__(self) -> IndexLock:
        if fcntl is None:
            return self
        path = lock_path(self.index_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder()
                if not self.wait:
                    raise IndexBusyError(
                        f"{self.index_dir} is being changed by {holder}; try again when it "
                        "has finished (or leave out --no-wait to wait for it)") from None
                if self.on_wait is not None:
                    self.on_wait(f"waiting for {holder}, which is changing {self.index_dir}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        remove_dead_staging(self.index_dir)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
