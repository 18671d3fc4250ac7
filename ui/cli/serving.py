"""``pursuit serve`` and ``pursuit demo``: load the models with progress, then serve the chat.

The models load before the server starts listening, one step at a time with a spinner and
its duration, so the first question is answered without a cold start; the server then
listens on ``host:port`` (loopback by default) until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.text import Text

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.errors import PursuitError
from pursuit.ui.settings import Settings

__all__ = ["LOOPBACK", "console_steps", "ensure_demo_index", "run_server"]

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def console_steps(console: Console) -> Callable[[str], AbstractContextManager[None]]:
    """A loading-step wrapper that shows a spinner, then a tick with the seconds it took."""
    @contextlib.contextmanager
    def step(label: str) -> Iterator[None]:
        started = time.perf_counter()
        with console.status(f"Loading {label} ..."):
            yield
        console.print(Text("✓ ", style="green") + Text(f"{label}  ")
                      + Text(f"{time.perf_counter() - started:.1f} s", style="dim"),
                      highlight=False)
    return step


def ensure_demo_index(settings: Settings, console: Console) -> Path:
    """The demo index (Python's documentation), built first when it is missing."""
    path = settings.demo_index
    if not (path / "manifest.json").exists():
        from pursuit.ui.cli.indexing import build_index

        console.print(f"Building the demo index of Python's documentation into {path} ...")
        started = time.perf_counter()
        build_index("pydocs", path, settings=settings, console=console).close()
        console.print(f"Built in {time.perf_counter() - started:.1f} s")
    return path


def run_server(settings: Settings, *, console: Console, demo: bool = False) -> None:
    """Serve the web chat over ``settings.index_path`` (the demo index when ``demo``).

    Example:
        >>> run_server(load_settings({"index": "demo-index"}), console=Console())  # doctest: +SKIP
    """
    import uvicorn

    from pursuit.ui.web.chatagent import load_chat_agent
    from pursuit.ui.web.server import create_app

    if demo:
        settings = replace(settings, index=str(ensure_demo_index(settings, console)))
    path = settings.index_path
    if not (path / "manifest.json").exists():
        raise PursuitError(f"no index at {path}; build one with: pursuit index pydocs --out "
                           f"{path} (or run: pursuit demo)")
    if settings.host not in LOOPBACK and not settings.token:
        console.print(Text(f"warning: serving on {settings.host} without a token; anyone who "
                           "can reach this machine can use it (set --token)", style="yellow"))
    index = SearchIndex.open(path)
    try:
        console.print(Text(f"Index {path}: {index.manifest.n_docs:,} documents from "
                           f"{index.manifest.source}", style="bold"), highlight=False)
        agent = load_chat_agent(index, settings, step=console_steps(console),
                                notice=lambda m: console.print(Text(m, style="yellow")))
        app = create_app(settings, session_factory=lambda: agent)
        url = f"http://{settings.host}:{settings.port}/"
        console.print(Text("Chat at ", style="bold") + Text(
            url + (f"#token={settings.token}" if settings.token else ""), style="bold cyan")
            + Text("  (Ctrl-C stops)", style="dim"), highlight=False)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                    access_log=False, timeout_graceful_shutdown=5)
    finally:
        index.close()
