"""Load test of the web chat: N chats, C at a time, against a real uvicorn server on loopback.

The server is the real app (``create_app``) under uvicorn on 127.0.0.1 and a free port,
answering from a small index built here with a scripted model (``--llm-delay-ms`` per model
call stands in for model time), so what is measured is the server: threads, queues, the
event stream and SQLite, not a model. Each chat streams ``POST /api/chat`` to its end.

Checked for every chat (a chat that fails any check counts as *lost*):

* the stream starts with ``conversation`` and ends with exactly one ``done`` carrying the
  same ids; its event types (heartbeats aside) are exactly the reference chat's sequence;
* the ``token`` pieces join to the ``answer`` text;
* ``GET /api/threads/{id}`` afterwards returns that answer (the turn was kept).

Reported: p50/p99 time to the first event, to the first ``plan`` (the first event that
needed a model call), and to ``done``; chats per second; refusals (429) and errors.
Bounded: at most 500 chats, 32 at a time, and ``--timeout-s`` for the whole run.

Run:
    nice .venv/bin/python bench/load_chat.py --chats 20 --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from rich.console import Console
from rich.table import Table

from pursuit.agent.config import AgentConfig
from pursuit.agent.graph import build_graph, sqlite_checkpointer
from pursuit.agent.llm.contract import ScriptedLLM
from pursuit.agent.searcher import SearchTools
from pursuit.agent.session import AgentSession
from pursuit.indexes.collection import SearchIndex
from pursuit.ui.settings import Settings
from pursuit.ui.web.chatagent import ChatAgent
from pursuit.ui.web.server import create_app

ROOT = Path(__file__).resolve().parents[1]
# The scripted model is the tests' own (tests/scripted_agent.py), not part of the package.
sys.path.append(str(ROOT / "tests"))
from scripted_agent import CORPUS, ScriptedAgent  # noqa: E402

HOST = "127.0.0.1"  # loopback only, by design
PLAN = {"nodes": [{"id": "n1", "question": "Who wrote Dune?", "depends_on": []},
                  {"id": "n2", "question": "Where was Frank Herbert born?", "depends_on": []}]}
FINAL = "Dune was written by Frank Herbert [1], who was born in Tacoma [2]."


def scripted(delay_s: float) -> ScriptedLLM:
    """A model that follows the prompts, taking ``delay_s`` for each call."""
    return ScriptedLLM(default=ScriptedAgent(plan=PLAN, answers="It is in the first passage [1].",
                                             final=FINAL, delay_s=delay_s))


def start_server(settings: Settings, llm: ScriptedLLM) -> tuple[uvicorn.Server, str]:
    def make() -> ChatAgent:
        index = SearchIndex.open(settings.index_path)
        config = AgentConfig(rerank=None, clarify=False)
        graph = build_graph(config, llm=llm, tools=SearchTools.over(index, config),
                            checkpointer=sqlite_checkpointer(settings.threads_path))
        return ChatAgent(AgentSession(graph), model="scripted")

    sock = socket.socket()
    sock.bind((HOST, 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings, session_factory=make),
                                           log_level="warning", timeout_graceful_shutdown=2))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start in 30 s")
        time.sleep(0.01)
    return server, f"http://{HOST}:{sock.getsockname()[1]}"


def client(base: str) -> httpx.AsyncClient:
    """A client with TCP_NODELAY: without it the request body waits ~40 ms for a delayed
    ACK (Nagle), which would be measured as server latency."""
    transport = httpx.AsyncHTTPTransport(
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.AsyncClient(base_url=base, timeout=60, transport=transport)


async def one_chat(http: httpx.AsyncClient, n: int) -> dict[str, Any]:
    """Stream one chat on a connection of its own; returns its events with arrival times
    (seconds from the request). Its own connection, like a page asking after a pause:
    reusing a kept-alive connection the instant the last stream ended adds ~40 ms of
    loopback ACK timing to the next request, which is not the server's doing."""
    started = time.perf_counter()
    events: list[tuple[float, str, dict[str, Any]]] = []
    kind = ""
    async with http.stream("POST", "/api/chat", json={"message": f"Dune question {n}"},
                           headers={"Connection": "close"}) as r:
        if r.status_code != 200:
            return {"status": r.status_code, "events": []}
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((time.perf_counter() - started, kind,
                               json.loads(line.removeprefix("data: "))))
    return {"status": 200, "events": events}


def problems(chat: dict[str, Any], reference: list[str] | None) -> list[str]:
    """What is wrong with one chat's stream (empty: nothing)."""
    if chat["status"] != 200:
        return [f"HTTP {chat['status']}"]
    events = [(k, d) for _, k, d in chat["events"] if k != "heartbeat"]
    kinds = [k for k, _ in events]
    out = []
    if not kinds or kinds[0] != "conversation" or kinds[-1] != "done" or kinds.count("done") != 1:
        return ["stream does not run from conversation to exactly one done"]
    if events[-1][1] != {**events[0][1], "paused": False}:
        out.append("done does not name the chat's conversation and turn")
    if reference is not None and kinds != reference:
        out.append(f"sequence differs: {kinds}")
    answers = [d["answer"]["text"] for k, d in events if k == "answer"]
    if answers != [FINAL] or "".join(d["text"] for k, d in events if k == "token") != FINAL:
        out.append("tokens or answer incomplete")
    if "error" in kinds:
        out.append("error event")
    return out


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else float("nan")


async def load(base: str, chats: int, concurrency: int) -> tuple[list[dict[str, Any]], float]:
    async with client(base) as http:
        reference = await one_chat(http, 0)  # also warms the server up
        gate = asyncio.Semaphore(concurrency)

        async def bounded(n: int) -> dict[str, Any]:
            async with gate:
                return await one_chat(http, n)

        started = time.perf_counter()
        results = await asyncio.gather(*(bounded(n) for n in range(1, chats + 1)))
        wall = time.perf_counter() - started
        for chat in [reference, *results]:
            if chat["status"] == 200 and chat["events"]:
                cid = chat["events"][0][2]["conversation_id"]
                kept = (await http.get(f"/api/threads/{cid}")).json()["turns"][0]
                chat["kept"] = (kept["answer"] or {}).get("text") == FINAL
        active = (await http.get("/api/health")).json()["active_runs"]
    return [reference, *results, {"active_after": active}], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=20, help="chats to run (1..500)")
    parser.add_argument("--concurrency", type=int, default=4, help="chats at once (1..32)")
    parser.add_argument("--llm-delay-ms", type=float, default=20.0,
                        help="scripted model time per call")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="limit for the whole run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/load_chat.json")
    args = parser.parse_args()
    if not 1 <= args.chats <= 500 or not 1 <= args.concurrency <= 32:
        parser.error("--chats must be 1..500 and --concurrency 1..32")
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        SearchIndex.build(CORPUS, Path(tmp) / "idx", source="load-chat").close()
        settings = Settings(cache_dir=Path(tmp), index=str(Path(tmp) / "idx"),
                            threads=str(Path(tmp) / "threads.sqlite"),
                            max_runs=args.concurrency)
        server, base = start_server(settings, scripted(args.llm_delay_ms / 1000))
        try:
            results, wall = asyncio.run(asyncio.wait_for(
                load(base, args.chats, args.concurrency), args.timeout_s))
        finally:
            server.should_exit = True
    *runs, tail = results
    reference, measured = runs[0], runs[1:]
    ref_problems = problems(reference, None)
    ref_kinds = [k for _, k, _ in reference["events"] if k != "heartbeat"]
    lost = [n for n, chat in enumerate(measured, start=1)
            if problems(chat, ref_kinds) or not chat.get("kept")]

    def times(kind: str | None) -> list[float]:
        return [next(t for t, k, _ in c["events"] if kind is None or k == kind)
                for c in measured if c["status"] == 200 and c["events"]]

    rows = {"first event": times(None), "first plan": times("plan"), "done": times("done")}
    doc = {"chats": args.chats, "concurrency": args.concurrency,
           "llm_delay_ms": args.llm_delay_ms, "events_per_chat": len(ref_kinds),
           "reference_ok": not ref_problems, "lost": len(lost), "lost_chats": lost,
           "refused_429": sum(c["status"] == 429 for c in measured),
           "heartbeats": sum(k == "heartbeat" for c in measured for _, k, _ in c["events"]),
           "active_runs_after": tail["active_after"], "wall_s": round(wall, 3),
           "chats_per_s": round(args.chats / wall, 2),
           "latency_ms": {name: {"p50": pct(v, 50), "p99": pct(v, 99)}
                          for name, v in rows.items()}}
    table = Table(title=f"{args.chats} chats, {args.concurrency} at a time, "
                        f"{args.llm_delay_ms:g} ms per model call")
    for column in ("time to", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right" if column != "time to" else "left")
    for name, stats in doc["latency_ms"].items():
        table.add_row(name, f"{stats['p50']:.1f}", f"{stats['p99']:.1f}")
    console.print(table)
    console.print(f"lost {doc['lost']} of {args.chats} (each stream {len(ref_kinds)} events, "
                  f"conversation .. done), 429s {doc['refused_429']}, active runs after "
                  f"{doc['active_runs_after']}, {doc['chats_per_s']} chats/s")
    if ref_problems:
        console.print(f"[red]reference chat broken: {ref_problems}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
