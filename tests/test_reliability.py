"""What pursuit promises when users are careless or hostile: the README's Guarantees.

Each test here backs one promise, and each failed before the change that made it true.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import run
from polling import wait_until

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.locking import IndexLock
from pursuit.indexes.records import Doc
from pursuit.rerankers.pipelines import pipeline as pursuit_pipeline

ROOT = Path(__file__).resolve().parents[1]
CLI = "from pursuit.ui.cli import main; main()"


def _docs(prefix: str, n: int) -> list[Doc]:
    return [Doc(f"{prefix}{i}", f"note {prefix} number {i} about tides and the moon")
            for i in range(n)]


def _jsonl(path: Path, docs: list[Doc]) -> Path:
    path.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs),
                    encoding="utf-8")
    return path


class Pursuit:
    """``pursuit ARGS`` in a process of its own; its output goes to files read at any time."""

    def __init__(self, *args: str, tmp_path: Path) -> None:
        env = {**os.environ, "PURSUIT_CACHE_DIR": str(tmp_path / "cache"),
               "PURSUIT_CONFIG": str(tmp_path / "no-config.toml"), "COLUMNS": "200"}
        name = f"run-{time.monotonic_ns()}"
        self.out, self.err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=out,
                                         stderr=err, env=env, cwd=ROOT.parent)

    def said(self) -> str:
        """Everything printed so far, with line wrapping undone."""
        return " ".join((self.out.read_text() + self.err.read_text()).split())

    def wait(self) -> int:
        return self.proc.wait(timeout=120)


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    SearchIndex.build(_docs("base", 20), tmp_path / "idx", source="test").close()
    return tmp_path / "idx"


def test_two_writers_at_once_lose_no_documents(index_dir: Path, tmp_path: Path) -> None:
    """Both adds wait while the index is locked (so their work overlaps for certain), then
    take turns: the index holds every document of both."""
    a = _jsonl(tmp_path / "a.jsonl", _docs("a", 10))
    b = _jsonl(tmp_path / "b.jsonl", _docs("b", 10))
    waiting = f"waiting for process {os.getpid()}, which is changing {index_dir}"
    with IndexLock(index_dir):
        writers = [Pursuit("add", str(index_dir), str(f), tmp_path=tmp_path) for f in (a, b)]
        # Each writer says whom it waits for before it reads the index.
        wait_until(lambda: all(waiting in w.said() for w in writers), seconds=60)
        busy = Pursuit("add", str(index_dir), str(a), "--no-wait", tmp_path=tmp_path)
        assert busy.wait() == 1
        assert f"{index_dir} is being changed by process {os.getpid()}" in busy.said()
        assert "Traceback" not in busy.said()
        assert all(w.proc.poll() is None for w in writers), "a writer went ahead of the lock"
    assert [w.wait() for w in writers] == [0, 0], [w.said() for w in writers]
    with SearchIndex.open(index_dir) as index:
        assert len(index.store) == 40
        ids = {f"a{i}" for i in range(10)} | {f"b{i}" for i in range(10)}
        assert ids <= set(index.store.all_ids())


def test_a_killed_writer_blocks_nobody_and_leaves_nothing_behind(index_dir: Path,
                                                                  tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pursuit.indexes.locking import IndexLock\n"
         f"with IndexLock({str(index_dir)!r}):\n    print('locked', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT.parent)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    # What a writer killed mid-add leaves: a full copy of the index beside it.
    stale = index_dir.with_name(f".{index_dir.name}.building-{holder.pid}")
    stale.mkdir()
    (stale / "store.sqlite").write_bytes(b"half a copy")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    add = Pursuit("add", str(index_dir), str(_jsonl(tmp_path / "c.jsonl", _docs("c", 3))),
                  "--no-wait", tmp_path=tmp_path)
    assert add.wait() == 0, add.said()
    assert "Index now holds 23 documents" in add.said()
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")) == [
        ".idx.lock"]


def test_deleting_an_id_named_twice_counts_it_once(index_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run(["delete", str(index_dir), "base1", "base1", "--json"], capsys,
                         monkeypatch, tmp_path)
    assert code == 0, err
    assert json.loads(out)["n_docs"] == 19
    code, out, err = run(["delete", str(index_dir), "base2", "base2"], capsys, monkeypatch,
                         tmp_path)
    assert code == 0 and "Deleted 1; 18 documents left" in " ".join((out + err).split())


def test_no_cutoff_sizes_memory_beyond_the_index(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    SearchIndex.build(_docs("d", 5), tmp_path / "five", source="test").close()
    with SearchIndex.open(tmp_path / "five") as index:
        # A trillion places would need terabytes; the store has five rows.
        ranking = pursuit_pipeline(index, "bm25%1000000000000").search("tides")
        assert len(ranking) == 5
    code, out, err = run(["search", "tides", "--index", str(tmp_path / "five"),
                          "-p", "bm25%1000000000000", "--json"], capsys, monkeypatch, tmp_path)
    assert code == 0 and len(json.loads(out)["hits"]) == 5
    for bad in ("0", "-3"):
        code, out, err = run(["search", "tides", "--index", str(tmp_path / "five"), "-k", bad],
                             capsys, monkeypatch, tmp_path)
        assert code == 2 and "Traceback" not in err
        assert "Invalid value for '-k': Input should be greater than or equal to 1" in err


def test_the_api_refuses_a_pipeline_deeper_than_its_documented_maximum(tmp_path: Path) -> None:
    from pursuit.ui.web.api import MAX_DEPTH

    with _served(tmp_path) as client:
        deep = client.post("/api/search", json={"query": "tides", "pipeline": "bm25%100000000"})
        assert deep.status_code == 422
        assert f"allows at most {MAX_DEPTH:,}" in deep.text and MAX_DEPTH == 10_000
        by_option = client.post("/api/search", json={"query": "tides",
                                                      "pipeline": "bm25(k=20000)"})
        assert by_option.status_code == 422 and "20,000 documents" in by_option.text
        fine = client.post("/api/search", json={"query": "tides", "pipeline": "bm25%10000"})
        assert fine.status_code == 200, fine.text


def _no_agent() -> None:
    from pursuit.indexes.errors import PursuitError

    raise PursuitError("these tests serve search only; no chat model is loaded")


def _served(tmp_path: Path, **settings: str):  # type: ignore[no-untyped-def]
    """The web server over a five-document index, without loading any chat model."""
    from fastapi.testclient import TestClient

    from pursuit.ui.settings import Settings
    from pursuit.ui.web.server import create_app

    SearchIndex.build(_docs("d", 5), tmp_path / "five", source="test").close()
    return TestClient(create_app(Settings(cache_dir=tmp_path, index=str(tmp_path / "five"),
                                          threads=str(tmp_path / "threads.sqlite"), **settings),
                                 session_factory=_no_agent), base_url="http://127.0.0.1:8000")


def test_another_host_name_cannot_read_the_local_server(tmp_path: Path) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: it gets nothing."""
    with _served(tmp_path) as client:
        body = {"query": "tides"}
        assert client.post("/api/search", json=body).status_code == 200
        assert client.post("/api/search", json=body,
                           headers={"Host": "localhost:8000"}).status_code == 200
        for evil in ("evil.example.com", "evil.example.com:8000", "127.0.0.1.evil.example"):
            refused = client.post("/api/search", json=body, headers={"Host": evil})
            assert refused.status_code == 400 and "d0" not in refused.text
            assert "PURSUIT_ALLOWED_HOSTS" in refused.json()["error"]
            assert client.get("/", headers={"Host": evil}).status_code == 400
    with _served(tmp_path / "named", host="0.0.0.0", allowed_hosts="chat.example.org") as client:
        assert client.post("/api/search", json={"query": "tides"},
                           headers={"Host": "chat.example.org"}).status_code == 200
        assert client.post("/api/search", json={"query": "tides"},
                           headers={"Host": "evil.example.com"}).status_code == 400


def test_every_page_forbids_framing_and_sniffing(tmp_path: Path) -> None:
    with _served(tmp_path) as client:
        for path in ("/", "/docs", "/api/health", "/static/app.js", "/no-such-page"):
            headers = client.get(path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"], path
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
        assert "'unsafe-inline'" not in client.get("/").headers["content-security-policy"]


def test_a_blank_token_is_refused() -> None:
    from pursuit.indexes.errors import PursuitError
    from pursuit.ui.settings import Settings

    with pytest.raises(PursuitError, match="setting token is blank"):
        Settings(token="   ")
    assert Settings(token="").token == "" and Settings(token="s3cret").token == "s3cret"


def test_a_missing_file_says_so_without_the_install_path(tmp_path: Path) -> None:
    with _served(tmp_path) as client:
        for path, name in (("/static/nope.js", "nope.js"), ("/static/%00", "\\x00"),
                           ("/static/..%2F..%2Fsettings.py", "../../settings.py")):
            missing = client.get(path)
            assert missing.status_code == 404, path
            assert missing.json() == {"error": f"there is no file '{name}' here; the chat "
                                               "page is at /"}
            assert str(ROOT) not in missing.text


def test_bad_input_to_every_command_is_a_message_not_a_traceback(
        index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder", encoding="utf-8")
    idx = str(index_dir)
    cases = {
        ("search", "tides", "--index", idx, "--published-before", "notadate"):
            "'notadate' is not a date; write it as YYYY-MM-DD",
        ("search", "tides", "--index", idx, "--published-after", "32/13/2020"):
            "'32/13/2020' is not a date",
        ("ask", "why tides?", "--index", idx, "--as-of", "yesterday"):
            "'yesterday' is not a date",
        ("index", str(empty), "--out", str(tmp_path / "e"), "--no-vectors"):
            f"{empty} holds no documents, so there is nothing to index",
        ("index", str(index_dir / "manifest.json"), "--out", str(a_file), "--no-vectors"):
            f"cannot write an index to {a_file}: it is a file",
        ("delete", idx, *[f"base{i}" for i in range(20)]):
            f"this would leave {idx} with no documents",
        ("eval", str(tmp_path / "nope"), "-p", "bm25"):
            f"{tmp_path / 'nope'} is not a BEIR dataset folder (no corpus.jsonl)",
        ("compare", str(tmp_path / "nope"), "-p", "a=bm25"):
            "compare needs at least two systems",
        ("add", str(tmp_path / "nope"), str(empty)): f"no index at {tmp_path / 'nope'}",
        ("add-vectors", str(tmp_path / "nope")): f"no index at {tmp_path / 'nope'}",
        ("events", "build", "--index", str(tmp_path / "nope")): f"no index at {tmp_path / 'nope'}",
        ("search", "tides", "--index", idx, "-p", "bm25%%"): "pipeline column 6: ",
        ("train", "llm-ql", str(tmp_path / "nope"), "--out", str(tmp_path / "run")):
            f"{tmp_path / 'nope'}: not a folder",
    }
    for argv, message in cases.items():
        code, out, err = run(list(argv), capsys, monkeypatch, tmp_path)
        said = " ".join(err.split())
        assert code == 1 and message in said, (argv, said)
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 3, (argv, err)
    with SearchIndex.open(index_dir) as index:
        assert len(index.store) == 20  # the refused delete changed nothing


@pytest.mark.parametrize(("change", "message"), [
    ({"n_docs": "twenty"}, "'n_docs' should be a whole number, found \"twenty\""),
    ({"components": []}, "'components' should be an object, found []"),
    ({"n_docs": 21}, "holds 20 documents but the manifest says 21"),
])
def test_a_damaged_manifest_names_what_is_wrong_and_the_rebuild(
        index_dir: Path, change: dict[str, object], message: str) -> None:
    from pursuit.indexes.errors import IndexError_

    manifest = index_dir / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **change}))
    with pytest.raises(IndexError_) as caught:
        SearchIndex.open(index_dir)
    assert message in str(caught.value)
    assert "rebuild it with: pursuit index test --out" in str(caught.value)


def test_a_huge_fused_pipeline_is_refused_with_a_message(index_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    huge = " + ".join(["bm25"] * 12_000)
    code, out, err = run(["search", "tides", "--index", str(index_dir), "-p", huge], capsys,
                         monkeypatch, tmp_path)
    assert code == 1 and "Traceback" not in err
    assert "the pipeline nests too deeply to read (83,997 characters); fuse fewer stages" \
        in " ".join(err.split())
    with _served(tmp_path / "server") as client:
        long = " + ".join(["bm25"] * 1000)  # within the body limit, beyond the pipeline's
        refused = client.post("/api/search", json={"query": "tides", "pipeline": long})
        assert refused.status_code == 422 and "at most 2000 characters" in refused.text
        too_big = client.post("/api/search", json={"query": "tides", "pipeline": huge})
        assert too_big.status_code == 413


def test_api_callers_cannot_choose_what_the_server_loads(tmp_path: Path) -> None:
    with _served(tmp_path) as client:
        for option in ("model='/etc'", "dtype='float16'", "device='cpu'"):
            body = {"query": "tides", "pipeline": f"bm25%5 >> icr({option})%2"}
            refused = client.post("/api/search", json=body)
            assert refused.status_code == 400, refused.text
            name = option.split("=")[0]
            assert refused.json()["error"] == (
                f"icr({name}=...) is not available over the API: this server reranks with "
                f"its own models; remove {name} from the pipeline")


def test_the_shared_model_cache_keeps_the_most_recently_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiny_lm import tiny_lm

    from pursuit.retrievers.lm import causal

    monkeypatch.setattr(causal, "_SHARED", {})
    folders = []
    for i in range(causal.MAX_SHARED_MODELS + 1):
        lm = tiny_lm()
        folders.append(tmp_path / f"lm{i}")
        lm.model.save_pretrained(folders[-1])
        lm.tokenizer.save_pretrained(folders[-1])
    first = causal.shared_causal_lm(str(folders[0]), dtype="float32", device="cpu")
    for folder in folders[1:-1]:
        causal.shared_causal_lm(str(folder), dtype="float32", device="cpu")
    assert causal.shared_causal_lm(str(folders[0]), dtype="float32", device="cpu") is first
    causal.shared_causal_lm(str(folders[-1]), dtype="float32", device="cpu")  # one too many
    held = [key[0] for key in causal._SHARED]
    assert len(held) == causal.MAX_SHARED_MODELS == 3
    assert held == [str(folders[2]), str(folders[0]), str(folders[3])]  # folders[1] went


class _SlowModelServer:
    """An OpenAI-style server on loopback that streams one piece and then keeps the
    connection open for a long time (like a model still generating), or answers 503."""

    def __init__(self, status: int = 200) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests, self.gone = 0, threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                if status != 200:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                piece = {"choices": [{"delta": {"content": "The tide"}}]}
                self.wfile.write(f"data: {json.dumps(piece)}\n\n".encode())
                self.wfile.flush()
                for _ in range(300):  # 30 s unless the client goes away
                    time.sleep(0.1)
                    try:
                        self.wfile.write(b": still generating\n\n")
                        self.wfile.flush()
                    except OSError:
                        outer.gone.set()
                        return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_stop_reaches_a_served_model_at_once() -> None:
    import threading

    from pursuit.agent.llm.contract import LLMError, cancel_scope, user
    from pursuit.agent.llm.http import OpenAIChatLLM

    slow = _SlowModelServer()
    try:
        llm, stop = OpenAIChatLLM(slow.url, "m", timeout_s=60), threading.Event()
        with cancel_scope(stop):
            stream = llm.stream([user("why tides?")])
        pieces, started = [], time.monotonic()
        for piece in stream:
            pieces.append(piece)
            threading.Timer(0.3, stop.set).start()  # the user presses Stop
        assert pieces == ["The tide"] and time.monotonic() - started < 5
        assert slow.gone.wait(5), "the connection to the model server stayed open"
    finally:
        slow.close()
    failing = _SlowModelServer(status=503)
    try:
        llm, stop = OpenAIChatLLM(failing.url, "m", retries=3, backoff_s=1.0), threading.Event()
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        with cancel_scope(stop), pytest.raises(LLMError, match="the run was stopped"):
            llm.complete([user("why tides?")])
        assert failing.requests == 1 and time.monotonic() - started < 3  # no retry after Stop
    finally:
        failing.close()


def test_errors_name_the_index_not_its_staging_copy(index_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    again = _jsonl(tmp_path / "again.jsonl", _docs("base", 1))
    code, out, err = run(["add", str(index_dir), str(again)], capsys, monkeypatch, tmp_path)
    said = " ".join(err.split())
    assert code == 1 and "building" not in said
    assert f"document id 'base0' is already in {index_dir}/docs.sqlite" in said
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")) == [
        ".idx.lock"]
    (index_dir / "bm25").rename(tmp_path / "moved")
    with pytest.raises(Exception, match="rebuild it with: pursuit index test --out"):
        SearchIndex.open(index_dir)  # the hint names the recorded source, not SOURCE
