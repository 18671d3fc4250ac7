"""The web chat's conversations: which turns belong together, in order, kept in SQLite.

A conversation is a list of turns; each turn is one question and its own agent thread
(the turn id *is* the agent's thread id, so the plan, sub-answers, answer and any pending
clarifying question live in the agent's checkpoints). This store keeps only what the
checkpoints do not: the order of turns, when they were asked, and the error of a run that
failed or was stopped, so the history can show it after a restart.

Example:
    >>> store = ConversationStore(Path(tmp) / "chat.sqlite")           # doctest: +SKIP
    >>> cid = store.create()                                           # doctest: +SKIP
    >>> turn = store.add_turn(cid, "Who wrote Dune?", as_of=None)      # doctest: +SKIP
    >>> [t.question for t in store.turns(cid)]                         # doctest: +SKIP
    ['Who wrote Dune?']
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ConversationStore", "TurnRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    question TEXT NOT NULL,
    as_of TEXT,
    created_at REAL NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns(conversation_id, seq);
"""


@dataclass(frozen=True)
class TurnRecord:
    """One question of a conversation, as the store keeps it.

    Attributes:
        turn_id: The turn's id, which is also its agent thread id.
        conversation_id: The conversation it belongs to.
        seq: Its position in the conversation (1, 2, ...).
        question: What was asked.
        as_of: The "as of" date the question was asked with, if any.
        created_at: Unix time it was asked.
        error: Why its last run failed or stopped (``None``: it did not).
    """

    turn_id: str
    conversation_id: str
    seq: int
    question: str
    as_of: str | None
    created_at: float
    error: str | None


class ConversationStore:
    """Conversations and their turns in one SQLite file, safe to share between threads.

    Args:
        path: The SQLite file (created with its folder when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
        self._lock = threading.Lock()
        with self._lock, self._conn:
            # WAL with NORMAL sync: a turn is written before its stream starts, and a full
            # fsync per write would sit between the question and its first event.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    def create(self) -> str:
        """Start a new, empty conversation; returns its id."""
        conversation_id = uuid.uuid4().hex
        with self._lock, self._conn:
            self._conn.execute("INSERT INTO conversations VALUES (?, ?)",
                               (conversation_id, time.time()))
        return conversation_id

    def exists(self, conversation_id: str) -> bool:
        """Whether ``conversation_id`` names a stored conversation."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM conversations WHERE id = ?",
                                     (conversation_id,)).fetchone()
        return row is not None

    def add_turn(self, conversation_id: str, question: str, *, as_of: str | None) -> TurnRecord:
        """Append a question to a conversation; returns the new turn."""
        turn_id = uuid.uuid4().hex
        now = time.time()
        with self._lock, self._conn:
            (last,) = self._conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM turns WHERE conversation_id = ?",
                (conversation_id,)).fetchone()
            self._conn.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, NULL)",
                               (turn_id, conversation_id, last + 1, question, as_of, now))
        return TurnRecord(turn_id, conversation_id, last + 1, question, as_of, now, None)

    def turn(self, conversation_id: str, turn_id: str) -> TurnRecord | None:
        """The turn ``turn_id`` of ``conversation_id`` (``None`` when it is not one of its)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id, conversation_id, seq, question, as_of, created_at, error FROM turns "
                "WHERE id = ? AND conversation_id = ?", (turn_id, conversation_id)).fetchone()
        return TurnRecord(*row) if row else None

    def turns(self, conversation_id: str) -> list[TurnRecord]:
        """The turns of a conversation in the order they were asked."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, conversation_id, seq, question, as_of, created_at, error FROM turns "
                "WHERE conversation_id = ? ORDER BY seq", (conversation_id,)).fetchall()
        return [TurnRecord(*row) for row in rows]

    def set_error(self, turn_id: str, error: str | None) -> None:
        """Record why the turn's last run failed (``None``: its last run went through)."""
        with self._lock, self._conn:
            self._conn.execute("UPDATE turns SET error = ? WHERE id = ?", (error, turn_id))

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()
