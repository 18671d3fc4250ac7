"""``pursuit ask`` end to end: a real index on disk, the model behind a real HTTP server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chat_server import chat_server
from cli_runner import run
from rich.console import Console
from scripted_agent import ScriptedAgent

from pursuit.ui.cli.ask import print_answer

FINAL = "The tide comes from the moon pulling the ocean [1]. Nobody knows why."
# The node leaves depends_on out, as small models do; the plan schema defaults it to [].
REPLY = ScriptedAgent(plan={"nodes": [{"id": "n1", "question": "What makes the tide?"}]},
                      answers="The moon pulls the ocean [1].", final=FINAL,
                      queries=["moon ocean tide"])


@pytest.fixture
def notes_index(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "tides.md").write_text("# Tides\nThe moon pulls the ocean and makes the tide.\n")
    (folder / "lava.txt").write_text("Lava flows from a volcano during an eruption.\n")
    code, _, err = run(["index", str(folder), "--out", str(tmp_path / "idx"), "--no-dense"],
                       capsys, monkeypatch, tmp_path)
    assert code == 0, err
    return tmp_path / "idx"


def test_ask_json_gives_cited_answer(notes_index: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with chat_server(REPLY) as (url, seen):
        code, out, err = run(["ask", "Why is there a tide?", "--index", str(notes_index),
                              "--llm-url", url, "--no-clarify", "--rerank", "none", "--json",
                              "--thread", "t-1"], capsys, monkeypatch, tmp_path)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["answer"] == "The tide comes from the moon pulling the ocean [1]. Nobody knows why."
    assert [c["doc_id"] for c in doc["citations"]] == ["tides.md"]
    assert doc["sentences"][1] == {"text": "Nobody knows why.", "citations": [],
                                   "abstains": False}
    assert doc["unsupported_sentences"] == 1
    assert doc["plan"] == [{"id": "n1", "question": "What makes the tide?", "depends_on": [],
                            "round": 1}]
    assert doc["thread_id"] == "t-1"
    assert set(doc["timings"]) >= {"plan", "search", "synthesize"}
    assert [body["model"] for body in seen] == ["default"] * len(seen)
    # The server reports usage on plain replies only: those are tokens; the streamed
    # synthesis is estimated in words (its prompt and its answer), apart from them.
    (streamed,) = [body for body in seen if body.get("stream")]
    assert doc["tokens"] == sum(10 + len(REPLY(body["messages"]).split())
                                for body in seen if not body.get("stream"))
    assert doc["estimated_tokens"] == (sum(len(m["content"].split())
                                           for m in streamed["messages"]) + len(FINAL.split()))
    assert "plan n1: What makes the tide?" in err  # the plan shows as it grows
    # The thread was kept on disk under the cache dir.
    assert (tmp_path / "cache" / "threads.sqlite").is_file()


def test_ask_twice_on_one_thread_answers_the_second_afresh(
        notes_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["ask", "Why is there a tide?", "--index", str(notes_index), "--no-clarify",
            "--rerank", "none", "--json", "--thread", "again"]
    with chat_server(REPLY) as (url, seen):
        code, out, err = run([*args, "--llm-url", url], capsys, monkeypatch, tmp_path)
        assert code == 0, err
        first, asked = json.loads(out), len(seen)
        code, out, err = run([*args, "--llm-url", url], capsys, monkeypatch, tmp_path)
    assert code == 0, err
    second = json.loads(out)
    # The second run asked the model everything again (plan, search, synthesis), and its
    # counts are its own, not added to the first run's.
    assert [b["messages"] for b in seen[asked:]] == [b["messages"] for b in seen[:asked]]
    assert (second["tokens"], second["estimated_tokens"]) == (first["tokens"],
                                                              first["estimated_tokens"])
    assert second["tokens"] > 0 and second["estimated_tokens"] > 0
    assert second["answer"] == FINAL and second["plan"] == first["plan"]


def test_ask_with_the_server_down_says_so(notes_index: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with chat_server(REPLY) as (url, _):
        pass  # the port is closed again
    code, out, err = run(["ask", "Why is there a tide?", "--index", str(notes_index),
                          "--llm-url", url, "--no-clarify", "--rerank", "none"],
                         capsys, monkeypatch, tmp_path)
    assert code == 1 and out == ""
    assert "error:" in err and url in err


def test_printed_answer_lists_what_the_documents_left_open() -> None:
    doc = {"answer": "The documents do not say where Frank Herbert [1] studied.",
           "citations": [{"n": 1, "title": "Dune", "doc_id": "dune"}], "unsupported_sentences": 0,
           "gaps": ["Where did Frank Herbert study?"]}
    console = Console(record=True, width=100)
    print_answer(doc, console)
    assert console.export_text().splitlines() == [
        "The documents do not say where Frank Herbert [1] studied.", "", "Sources",
        "[1] Dune  dune", "", "Not found in the documents", "- Where did Frank Herbert study?"]
