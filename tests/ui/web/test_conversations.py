"""The web chat's conversation store: turns in order, errors kept, all of it across reopening."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from pursuit.ui.settings import Settings, load_settings
from pursuit.ui.web.conversations import ConversationStore, TurnRecord


def test_turns_keep_their_order_and_errors_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "chat.sqlite"
    store = ConversationStore(path)
    cid = store.create()
    other = store.create()
    first = store.add_turn(cid, "Who wrote Dune?", as_of=None)
    second = store.add_turn(cid, "Where was he born?", as_of="2021-01-01")
    elsewhere = store.add_turn(other, "Tides?", as_of=None)
    store.set_error(second.turn_id, "stopped")
    store.close()

    reopened = ConversationStore(path)
    turns = reopened.turns(cid)
    assert [(t.seq, t.question, t.as_of, t.error) for t in turns] == [
        (1, "Who wrote Dune?", None, None), (2, "Where was he born?", "2021-01-01", "stopped")]
    assert turns[0] == first and turns[0].created_at <= turns[1].created_at
    assert isinstance(turns[1], TurnRecord) and turns[1].turn_id == second.turn_id
    assert reopened.turns(other) == [elsewhere] and elsewhere.seq == 1
    assert reopened.exists(cid) and not reopened.exists("nope")
    assert reopened.turns("nope") == []
    # A turn is found only through its own conversation.
    assert reopened.turn(cid, first.turn_id) == first
    assert reopened.turn(other, first.turn_id) is None
    reopened.set_error(second.turn_id, None)  # a resumed run that went through clears it
    assert reopened.turn(cid, second.turn_id).error is None  # type: ignore[union-attr]
    reopened.close()
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM turns").fetchone()
    assert rows == (3,)


def test_concurrent_turns_get_distinct_positions(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "chat.sqlite")
    cid = store.create()

    def ask(n: int) -> None:
        for i in range(10):
            store.add_turn(cid, f"q{n}-{i}", as_of=None)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    turns = store.turns(cid)
    assert [t.seq for t in turns] == list(range(1, 41))
    assert len({t.turn_id for t in turns}) == 40
    store.close()


def test_the_store_sits_beside_the_threads_file(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    assert settings.chat_path == tmp_path / "cache" / "chat.sqlite"
    moved = Settings(cache_dir=tmp_path, threads=str(tmp_path / "x" / "threads.db"))
    assert moved.chat_path == tmp_path / "x" / "chat.sqlite"
    assert moved.index_path == Path("demo-index")
    assert Settings(index=str(tmp_path / "idx")).index_path == tmp_path / "idx"
    assert Settings(cors_origins=" http://a.test, ,http://b.test").cors_list == [
        "http://a.test", "http://b.test"]


def test_server_settings_come_from_the_environment_and_flags(tmp_path: Path) -> None:
    env = {"PURSUIT_CONFIG": str(tmp_path / "none.toml"), "PURSUIT_MAX_RUNS": "2",
           "PURSUIT_HEARTBEAT_S": "0.5", "PURSUIT_TOKEN": "t0k", "PURSUIT_INDEX": "news"}
    settings = load_settings({"max_request_bytes": 2048, "token": None}, environ=env)
    assert (settings.max_runs, settings.heartbeat_s, settings.token) == (2, 0.5, "t0k")
    assert settings.max_request_bytes == 2048 and settings.index_path == Path("news")
    assert (settings.host, settings.port, settings.cors_list) == ("127.0.0.1", 8000, [])
