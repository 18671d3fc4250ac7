"""The demo corpus built from the local Python's own documentation."""

from __future__ import annotations

import sys
from pydoc_data.topics import topics

from pursuit.indexes.sources.pydocs import (
    PYTHON_VERSION,
    _collect_stdlib,
    python_docs,
    split_passages,
)


def test_split_passages_packs_paragraphs_and_cuts_long_lines() -> None:
    assert split_passages("aa\n\nbb\n\ncc", 6) == ["aa\n\nbb", "cc"]
    assert split_passages("short", 100) == ["short"]
    assert split_passages("x" * 10 + "\n\n" + "y" * 3, 4) == ["xxxx", "xxxx", "xx", "yyy"]
    assert split_passages("l1\nl2 longer line\nl3", 8) == ["l1", "l2 longe", "r line", "l3"]


def test_topics_only_exact_first_docs() -> None:
    docs = list(python_docs(stdlib=False, max_chars=100_000))
    assert len(docs) == len(topics)
    first = docs[0]
    assert first.id == "topic:assert"
    assert first.title == 'The "assert" statement'
    assert first.text == topics["assert"].strip("\n")
    assert first.metadata == {"python": PYTHON_VERSION, "kind": "topic"}
    assert [d.id for d in docs] == [f"topic:{k}" for k in sorted(topics)]


def test_long_topics_split_with_part_ids() -> None:
    docs = [d for d in python_docs(stdlib=False, max_chars=2000) if d.id.startswith("topic:assignment#")]
    parts = len(docs)
    assert parts > 1
    assert [d.id for d in docs] == [f"topic:assignment#{n}" for n in range(1, parts + 1)]
    assert all(len(d.text) <= 2000 and d.title == "Assignment statements" for d in docs)
    assert docs[1].metadata == {"python": PYTHON_VERSION, "kind": "topic", "part": 2, "parts": parts}
    # Nothing is lost but the separators between passages.
    assert "".join(d.text for d in docs).replace("\n", "") == topics["assignment"].replace("\n", "")


def test_max_docs() -> None:
    assert [d.id for d in python_docs(max_docs=2, stdlib=False)] == ["topic:assert",
                                                                     "topic:assignment#1"]


def test_stdlib_docs_known_entries_and_unique_ids() -> None:
    docs = list(python_docs())
    by_id = {d.id: d for d in docs}
    assert len(by_id) == len(docs)  # ids are unique
    assert 2000 < len(docs) < 10000
    dumps = by_id["module:json.dumps"]
    assert dumps.title == "json.dumps"
    assert dumps.text.startswith("json.dumps(obj, *, skipkeys=False, ensure_ascii=True")
    assert "Serialize ``obj`` to a JSON formatted ``str``." in dumps.text
    assert dumps.metadata == {"python": PYTHON_VERSION, "kind": "function", "module": "json"}
    # Functions live under the name people use: os.path, not posixpath.
    assert by_id["module:os.path.join"].text.startswith("os.path.join(a, *p)")
    assert "module:posixpath.join" not in by_id
    # A class carries its public methods.
    decoder = by_id["module:json.JSONDecoder"].text
    assert decoder.startswith("class json.JSONDecoder(*, object_hook=None")
    assert "\n\nraw_decode(self, s, idx=0)\n    Decode a JSON document" in decoder
    # Skipped: GUI, side effects, tests, private modules.
    modules = {d.metadata.get("module") for d in docs}
    assert not modules & {"antigravity", "this", "tkinter", "idlelib", "turtle", "test"}
    assert not any(m and m.startswith("_") for m in modules)
    # Defaults that print memory addresses or the environment are masked.
    assert not [d.id for d in docs if " at 0x" in d.text or "environ({" in d.text]
    assert sys.version_info[:2] == tuple(int(x) for x in PYTHON_VERSION.split(".")[:2])


def test_collection_is_deterministic() -> None:
    assert _collect_stdlib.__wrapped__() == _collect_stdlib()
