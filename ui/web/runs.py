"""Agent runs behind the web chat: one worker thread per run, events out as server-sent events.

The agent is synchronous, so each run iterates its event generator in a worker thread
and hands every event to the request's event loop through an ``asyncio.Queue``. The
stream (:meth:`RunManager.stream`) writes them as ``event: <type>\\ndata: <json>\\n\\n``,
adds a ``heartbeat`` whenever the queue stays quiet for ``heartbeat_s``, and always ends
with exactly one ``done``. A failure in the run becomes an ``error`` event before it.

Stopping a run (``/api/stop``, or the client going away) sets its cancel flag: the worker
checks it between events and closes the agent's generator, and the stream ends at once
with ``error`` ("stopped") and ``done``, without waiting for a model call in progress. The
run keeps its slot until the worker has really finished, so ``max_runs`` bounds the work
the server does, not just the streams it has open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pursuit.agent.llm.contract import cancel_scope
from pursuit.indexes.errors import PursuitError

__all__ = ["STOPPED", "Run", "RunLimitError", "RunManager", "sse"]

log = logging.getLogger("pursuit.ui")

#: The ``error`` message of a run that was stopped by the user or a disconnect.
STOPPED = "stopped"

#: ``events(cancel) -> agent events``; ``cancel`` is set when the run should stop.
EventSource = Callable[[threading.Event], Iterator[dict[str, Any]]]
#: Called once when a run's worker finishes: ``(error or None, paused)``.
OnFinish = Callable[[str | None, bool], None]


class RunLimitError(PursuitError):
    """The server already works on ``max_runs`` runs."""


@dataclass(frozen=True)
class _End:
    """The worker finished: ``paused`` says whether the run waits for the user."""

    paused: bool


_STOP = object()  # put on a run's queue by stop(): end the stream now


def _scoped(source: Iterable[dict[str, Any]], cancel: threading.Event) -> Iterator[dict[str, Any]]:
    """``source``'s events, each produced inside the run's cancel scope, so a model
    generating in-process for this run stops as soon as the run is stopped."""
    it = iter(source)
    while True:
        with cancel_scope(cancel):
            try:
                event = next(it)
            except StopIteration:
                return
        yield event


def sse(event: dict[str, Any]) -> str:
    """One server-sent event: ``event: <type>`` and the other fields as JSON ``data``."""
    data = {k: v for k, v in event.items() if k != "type"}
    payload = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {payload}\n\n"


def describe(exc: BaseException) -> str:
    """What an ``error`` event says about ``exc``: our own errors verbatim, others typed."""
    if isinstance(exc, PursuitError | ValueError):
        return str(exc)
    return (f"the server failed while answering ({type(exc).__name__}: {exc}); "
            "the server log has the details")


@dataclass
class Run:
    """One run in progress.

    Attributes:
        conversation_id / turn_id: What the run answers.
        cancel: Set to stop the run.
        queue: Events for the stream, in the loop the run was started from.
    """

    conversation_id: str
    turn_id: str
    loop: asyncio.AbstractEventLoop
    cancel: threading.Event = field(default_factory=threading.Event)
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def post(self, item: Any) -> None:
        """Hand ``item`` to the stream from any thread (dropped once the loop is gone)."""
        with contextlib.suppress(RuntimeError):  # the server is shutting down
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class RunManager:
    """Starts, limits, streams and stops runs.

    Args:
        max_runs: Runs worked on at once; :meth:`reserve` refuses more.
        heartbeat_s: Quiet seconds before a stream sends a ``heartbeat``.
    """

    def __init__(self, max_runs: int, heartbeat_s: float) -> None:
        if max_runs < 1:
            raise PursuitError(f"max_runs must be at least 1, got {max_runs}")
        if heartbeat_s <= 0:
            raise PursuitError(f"heartbeat_s must be positive, got {heartbeat_s}")
        self.max_runs, self.heartbeat_s = max_runs, heartbeat_s
        self._lock = threading.Lock()
        self._reserved = 0
        self._runs: dict[str, Run] = {}

    @property
    def active(self) -> int:
        """Runs holding a slot now (reserved or working)."""
        with self._lock:
            return self._reserved

    def reserve(self) -> None:
        """Take a slot for a run about to start; raises :class:`RunLimitError` when full."""
        with self._lock:
            if self._reserved >= self.max_runs:
                raise RunLimitError("too many questions at once; try again shortly")
            self._reserved += 1

    def release(self) -> None:
        """Give back a slot that :meth:`reserve` took and no run used."""
        with self._lock:
            self._reserved -= 1

    def running(self, turn_id: str) -> bool:
        """Whether a run of ``turn_id`` is still working."""
        with self._lock:
            return turn_id in self._runs

    def launch(self, conversation_id: str, turn_id: str, events: EventSource,
               on_finish: OnFinish) -> Run:
        """Start a run in a reserved slot; must be called from the event loop."""
        run = Run(conversation_id, turn_id, asyncio.get_running_loop())
        with self._lock:
            self._runs[turn_id] = run
        threading.Thread(target=self._work, args=(run, events, on_finish),
                         name=f"run-{turn_id[:8]}", daemon=True).start()
        return run

    def stop(self, conversation_id: str, turn_id: str) -> bool:
        """Stop the run of a turn; ``False`` when none is working."""
        with self._lock:
            run = self._runs.get(turn_id)
        if run is None or run.conversation_id != conversation_id:
            return False
        run.cancel.set()
        run.post(_STOP)
        return True

    def stop_all(self) -> None:
        """Stop every run (the server is shutting down)."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            self.stop(run.conversation_id, run.turn_id)

    def _work(self, run: Run, events: EventSource, on_finish: OnFinish) -> None:
        error: str | None = None
        paused = finished = False
        try:
            source = events(run.cancel)
            try:
                for event in _scoped(source, run.cancel):
                    if run.cancel.is_set():
                        break
                    if event.get("type") == "done":
                        finished, paused = True, bool(event.get("paused"))
                        continue  # the stream writes its own done, with the turn's ids
                    run.post(event)
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()  # ends the agent's graph run where it stands
            if run.cancel.is_set() and not finished:
                error = STOPPED
        except Exception as exc:  # every failure must reach the page as an error event
            error = STOPPED if run.cancel.is_set() else describe(exc)
            if error != STOPPED:
                log.exception("run %s failed", run.turn_id)
                run.post({"type": "error", "message": error})
        finally:
            try:
                on_finish(error, paused)
            except Exception:
                log.exception("could not record the end of run %s", run.turn_id)
            with self._lock:
                self._runs.pop(run.turn_id, None)
                self._reserved -= 1
            run.post(_End(paused))

    async def stream(self, run: Run, head: list[dict[str, Any]]) -> AsyncIterator[str]:
        """The run's events as SSE text: ``head`` first, heartbeats, ``done`` last."""
        done = {"type": "done", "conversation_id": run.conversation_id,
                "turn_id": run.turn_id}
        try:
            for event in head:
                yield sse(event)
            while True:
                try:
                    item = await asyncio.wait_for(run.queue.get(), timeout=self.heartbeat_s)
                except TimeoutError:
                    yield sse({"type": "heartbeat"})
                    continue
                if item is _STOP:
                    yield sse({"type": "error", "message": STOPPED})
                    yield sse({**done, "paused": False})
                    return
                if isinstance(item, _End):
                    yield sse({**done, "paused": item.paused})
                    return
                yield sse(item)
        finally:
            run.cancel.set()  # a disconnect lands here too: the worker stops at its next event
