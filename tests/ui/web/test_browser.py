"""The web chat in a real browser: Debian's Chromium driven by Playwright, the real server.

The server is ``create_app`` under uvicorn on a free 127.0.0.1 port, answering with the
agent graph over a tiny BM25 index and a scripted model (answers chosen by system prompt),
so every run is exact and fast. Screenshots land in ``build/screenshots/``.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from scripted_agent import CORPUS, AskOnce, Hook, ScriptedAgent

from pursuit.agent.config import AgentConfig
from pursuit.agent.graph import build_graph, sqlite_checkpointer
from pursuit.agent.llm.contract import ScriptedLLM
from pursuit.agent.prompts import ANSWERER
from pursuit.agent.searcher import SearchTools
from pursuit.agent.session import AgentSession
from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.records import Doc
from pursuit.ui.settings import Settings

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Chromium is not installed at /usr/bin/chromium; install it with "
                "`apt-get install -y --no-install-recommends chromium`", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
uvicorn = pytest.importorskip("uvicorn")

from pursuit.ui.web.server import create_app  # noqa: E402  (after the skips: needs fastapi)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[3] / "build" / "screenshots"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE = ("Zanzibar marmalade forum: <script>alert(1)</script> and "
           "<img src=x onerror=\"alert(2);window.__pwned=1\"> zanzibar marmalade.")
DOCS = [
    *CORPUS,
    Doc("zanzibar", HOSTILE, title="<b>Zanzibar</b> forum",
        published_at=datetime(2021, 5, 6, tzinfo=UTC)),
]
PLANS = {
    "Where was the author of Dune born?": [("n1", "Who wrote Dune?", []),
                                           ("n2", "Where was the author of Dune born?", ["n1"])],
    "Who made Dune?": [("n1", "Who wrote Dune?", [])],
    "What does the zanzibar marmalade forum say?": [("n1", "zanzibar marmalade forum", [])],
    "Slow question about tides": [("n1", "What raises the tides?", [])],
    "Where did the author of Dune study?": [("n1", "Who wrote Dune?", []),
                                            ("n2", "Where did Frank Herbert study?", ["n1"])],
}
SUB_ANSWERS = {"Who wrote Dune?": "Frank Herbert wrote Dune {Dune}.",
               "Where was the author of Dune born?": "In Tacoma {Frank Herbert}.",
               "zanzibar marmalade forum": "The forum talks about marmalade {<b>Zanzibar</b> forum}.",
               "What raises the tides?": "The moon {Tides}.",
               "Where did Frank Herbert study?": "The documents do not say where he studied."}
FINALS = {"Where was the author of Dune born?":
          "Dune's author Frank Herbert [1] was born in Tacoma [2]. He liked sand.",
          "Who made Dune?": "Frank Herbert wrote the novel [1].",
          "What does the zanzibar marmalade forum say?": "It discusses marmalade [1].",
          "Slow question about tides": "The moon raises them [1].",
          "Where did the author of Dune study?":
          "The documents do not say where Frank Herbert [1] studied."}


def plan_for(question: str) -> dict[str, Any]:
    """The planner's plan for one of the questions the tests type."""
    return {"nodes": [{"id": i, "question": q, "depends_on": d} for i, q, d in PLANS[question]]}


def hold_tides(release: threading.Event) -> Hook:
    """A hook that keeps the tides searcher waiting until ``release`` is set."""
    def hook(kind: str, question: str) -> None:
        if kind == ANSWERER and question == "What raises the tides?":
            release.wait(20)  # the stop test ends this run before it gets here
    return hook


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """``create_app`` under uvicorn in a thread, on a free port."""

    def __init__(self, settings: Settings, session: AgentSession) -> None:
        app = create_app(settings, session_factory=lambda: session)
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("browser")
    index = SearchIndex.build(DOCS, root / "idx", source="fixture")
    settings = Settings(cache_dir=root / "cache", index=str(root / "idx"),
                        threads=str(root / "threads.sqlite"), token=TOKEN, heartbeat_s=1.0)
    release = threading.Event()
    script = ScriptedAgent(plan=plan_for, answers=SUB_ANSWERS, final=FINALS,
                           hook=hold_tides(release))

    def session() -> AgentSession:
        config = AgentConfig(rerank=None, clarify=True)
        graph = build_graph(config, llm=ScriptedLLM(default=script),
                            tools=SearchTools.over(index, config),
                            clarifier=AskOnce(about="Who made Dune?"),
                            checkpointer=sqlite_checkpointer(settings.threads_path))
        return AgentSession(graph)

    served = Served(settings, session())
    try:
        yield {"settings": settings, "session": session, "server": served, "release": release}
    finally:
        release.set()
        served.close()
        index.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, world: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.add_init_script(STREAM_WATCH)
    yield page
    context.close()
    assert page.errors == []  # no script error on the page, in any test
    assert page.dialogs == []  # nothing in any document ever opened a dialog


# Records whether an answer was ever shown while streaming (before the final answer).
STREAM_WATCH = """
window.__streamed = 0;
new MutationObserver((records) => {
  for (const r of records) {
    if (r.type === 'attributes' && (r.oldValue || '').includes('streaming')) window.__streamed++;
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['class'],
                      attributeOldValue: true});
"""


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_chat(page: Any, base: str, fragment: str = "") -> None:
    page.goto(f"{base}#token={TOKEN}{fragment}")
    page.wait_for_selector("#health:has-text('documents')")


def ask(page: Any, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def test_ask_shows_plan_streamed_answer_and_cited_sources(page: Any, world: dict[str, Any]) -> None:
    open_chat(page, world["server"].url)
    settings = world["settings"]
    assert page.text_content("#health") == f"4 documents in {settings.index} · {settings.llm}"
    ask(page, "Where was the author of Dune born?")
    page.wait_for_selector(".turn .answer.final")
    assert page.evaluate("window.__streamed") >= 1  # tokens were shown before the answer

    nodes = page.locator("#plan svg g.node")
    assert nodes.evaluate_all("gs => gs.map(g => [g.dataset.nodeId, g.dataset.status])") == \
        [["n1", "done"], ["n2", "done"]]
    assert page.locator("#plan svg g.node[data-node-id=n2] title").text_content() == \
        "n2 (done): Where was the author of Dune born?"
    edge = page.locator("#plan svg path.edge")
    assert edge.evaluate_all("es => es.map(e => [e.dataset.from, e.dataset.to])") == [["n1", "n2"]]
    # n2 depends on n1: it is drawn one column to the right.
    xs = nodes.evaluate_all("gs => gs.map(g => g.transform.baseVal[0].matrix.e)")
    assert xs[1] > xs[0]

    answer = page.locator(".turn .answer.final")
    assert answer.locator(".answer-text").text_content() == \
        "Dune's author Frank Herbert [1] was born in Tacoma [2]. He liked sand. no source "
    assert answer.locator(".sentence.unsourced").text_content() == "He liked sand. no source"
    cards = page.locator("#sources .source-list.cited .source")
    assert cards.evaluate_all("cs => cs.map(c => c.dataset.docId)") == ["dune", "herbert"]
    assert cards.nth(1).locator(".passage").text_content() == \
        "Frank Herbert was born in Tacoma, Washington, in 1920."
    assert cards.nth(1).locator("time").text_content() == "2020-01-02"
    assert cards.nth(1).locator(".source-title").text_content() == "Frank Herbert"

    answer.locator("button.cite", has_text="[2]").click()
    assert page.locator("#sources .source.highlight").get_attribute("data-doc-id") == "herbert"
    assert page.evaluate("document.activeElement.dataset.docId") == "herbert"
    assert page.text_content("#status") == "Answer ready."
    shot(page, "answer")


def test_sub_questions_the_documents_left_open_are_listed(page: Any,
                                                          world: dict[str, Any]) -> None:
    open_chat(page, world["server"].url)
    ask(page, "Where did the author of Dune study?")
    answer = page.locator(".turn .answer.final")
    answer.wait_for()
    assert answer.locator(".answer-text").text_content() == (
        "The documents do not say everything this question needs. "
        "The documents do not say where Frank Herbert [1] studied. ")
    assert answer.locator("ul.gaps li").all_text_contents() == ["Where did Frank Herbert study?"]
    assert answer.locator("p", has_text="Not found in the documents").count() == 1
    assert answer.locator(".sentence.unsourced").count() == 0  # abstaining claims nothing


def test_clarifying_question_by_button_and_by_typing(page: Any, world: dict[str, Any]) -> None:
    open_chat(page, world["server"].url)
    ask(page, "Who made Dune?")
    box = page.locator(".msg.clarify")
    box.wait_for()
    assert box.locator(".asked").text_content() == "Do you mean the novel or the film?"
    assert box.locator("button.option").all_text_contents() == ["novel", "film"]
    assert page.text_content("#question-label") == "Your answer to the clarifying question"
    assert page.get_attribute("#question", "placeholder") == "novel, film, or your own answer"
    assert page.is_hidden(".turn .msg.agent")  # nothing to say until the user answers
    shot(page, "clarify")
    box.locator("button.option", has_text="novel").click()
    page.wait_for_selector(".answer.final")
    assert page.text_content(".answer.final .answer-text") == "Frank Herbert wrote the novel [1]. "
    assert page.locator(".msg.clarified .replied").text_content() == "Younovel"
    assert page.locator(".msg.clarify").count() == 0

    page.click("#new-chat")
    ask(page, "Who made Dune?")
    page.locator(".msg.clarify").wait_for()
    ask(page, "FILM")  # typed, in any case: recorded as the option it names
    page.wait_for_selector(".answer.final")
    assert page.locator(".msg.clarified .replied").text_content() == "Youfilm"
    assert page.text_content("#question-label") == "Your question"


def test_thread_survives_reload_and_server_restart(page: Any, world: dict[str, Any]) -> None:
    open_chat(page, world["server"].url)
    ask(page, "Where was the author of Dune born?")
    page.wait_for_selector(".answer.final")
    conversation = re.search(r"[#&]c=([^&]+)", page.url).group(1)
    page.reload()
    page.wait_for_selector(".answer.final")
    assert page.locator(".turn .question").all_text_contents() == \
        ["Where was the author of Dune born?"]
    assert page.locator("#plan svg g.node[data-status=done]").count() == 2
    assert page.locator("#sources .source-list.cited .source").count() == 2
    assert page.locator("#recent a").all_text_contents() == ["Where was the author of Dune born?"]

    restarted = Served(world["settings"], world["session"]())  # a new process on the same files
    try:
        open_chat(page, restarted.url, f"&c={conversation}")
        page.wait_for_selector(".answer.final")
        assert page.text_content(".answer.final .answer-text").startswith(
            "Dune's author Frank Herbert [1] was born in Tacoma [2].")
        assert page.locator(".turn").count() == 1
        shot(page, "restored")
    finally:
        restarted.close()


def test_document_html_is_shown_as_text_and_never_runs(page: Any, world: dict[str, Any]) -> None:
    open_chat(page, world["server"].url)
    ask(page, "What does the zanzibar marmalade forum say?")
    page.wait_for_selector(".answer.final")
    card = page.locator("#sources .source-list.cited .source").first
    assert card.get_attribute("data-doc-id") == "zanzibar"
    assert card.locator(".source-title").text_content() == "<b>Zanzibar</b> forum"
    assert card.locator(".passage").text_content() == HOSTILE
    assert page.locator("#sources img, #sources script, #sources b").count() == 0
    assert page.locator(".answer button.cite").get_attribute("aria-label") == \
        "Source 1: <b>Zanzibar</b> forum"
    page.wait_for_timeout(300)  # give a planted onerror handler the time it would need
    assert page.dialogs == []
    assert page.evaluate("window.__pwned === undefined")
    shot(page, "hostile-document")


def test_stop_button_ends_a_run(page: Any, world: dict[str, Any]) -> None:
    open_chat(page, world["server"].url)
    ask(page, "Slow question about tides")
    page.wait_for_selector("#plan svg g.node[data-status=searching]")
    assert page.is_enabled("#stop") and page.is_disabled("#send")
    page.click("#stop")
    page.wait_for_selector(".turn .error.stopped")
    assert page.text_content(".turn .error") == "Stopped before the answer was finished."
    assert page.text_content("#status") == "Stopped."
    assert page.is_disabled("#stop") and page.is_enabled("#send")
    # The sub-question never finished: it is drawn as planned again.
    assert page.get_attribute("#plan svg g.node", "data-status") == "planned"
    shot(page, "stopped")
    world["release"].set()  # let the blocked model call return; the run is gone
    deadline = time.monotonic() + 10
    while page.request.get(world["server"].url + "api/health", headers=AUTH).json()[
            "active_runs"]:
        assert time.monotonic() < deadline, "the stopped run never let go of its slot"
        time.sleep(0.05)
    page.reload()  # the stop was recorded with the turn
    page.wait_for_selector(".turn .error.stopped")
    assert page.locator(".answer.final").count() == 0
    assert page.locator(".turn .question").all_text_contents() == ["Slow question about tides"]


def test_missing_token_and_unknown_conversation_are_explained(page: Any,
                                                              world: dict[str, Any]) -> None:
    page.goto(world["server"].url)
    page.wait_for_selector("#notice:not([hidden])")
    assert page.text_content("#notice").startswith("this server needs its token: send the header")
    page.goto("about:blank")
    open_chat(page, world["server"].url, "&c=nope")
    page.wait_for_selector("#notice:not([hidden])")
    assert page.text_content("#notice") == "unknown conversation 'nope'"
    assert "c=" not in page.url  # forgotten: the next question starts a new conversation
    ask(page, "Who made Dune?")
    page.locator(".msg.clarify").wait_for()
    assert page.is_hidden("#notice")
    assert re.search(r"[#&]c=[^&]+", page.url)
