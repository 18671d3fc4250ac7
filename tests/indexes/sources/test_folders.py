"""A folder of user files as documents: ids, titles, stripped HTML, order, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pursuit.indexes.errors import FormatError
from pursuit.indexes.sources.folders import read_folder

HTML = """<!doctype html><html><head><title> Tide  tables </title>
<style>body { color: red }</style><script>alert("x")</script></head>
<body><h1>Tides</h1><p>High water at <b>noon</b>.</p><noscript>enable js</noscript>
<p>Low&nbsp;water &amp; calm.</p></body></html>"""


def build(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.txt").write_text("hidden", encoding="utf-8")
    (root / "b.md").write_text("```\n# not a title\n```\nIntro\n\n## Moon phases ##\nNew moon.\n",
                               encoding="utf-8")
    (root / "a.txt").write_text("\ufeffplain text\n", encoding="utf-8")
    (root / "sub" / "page.HTML").write_text(HTML, encoding="utf-8")
    (root / "sub" / "notitle.htm").write_text("<p>only body</p>", encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / ".draft.md").write_text("# hidden", encoding="utf-8")
    return root


def test_read_folder_exact_docs(tmp_path: Path) -> None:
    root = build(tmp_path / "notes")
    os.utime(root / "a.txt", (0, 86400))
    docs = list(read_folder(root))
    assert [(d.id, d.title, d.text) for d in docs] == [
        ("a.txt", "a", "plain text"),
        ("b.md", "Moon phases", "```\n# not a title\n```\nIntro\n\n## Moon phases ##\nNew moon."),
        ("sub/notitle.htm", "notitle", "only body"),
        ("sub/page.HTML", "Tide tables", "Tides\nHigh water at noon.\nLow water & calm."),
    ]
    assert docs[0].url == (root / "a.txt").resolve().as_uri()
    assert docs[0].published_at is None
    assert docs[0].metadata == {"mtime": "1970-01-02T00:00:00+00:00"}


def test_suffix_filter(tmp_path: Path) -> None:
    root = build(tmp_path / "notes")
    assert [d.id for d in read_folder(root, suffixes=(".md",))] == ["b.md"]


def test_undecodable_file_is_named(tmp_path: Path) -> None:
    root = build(tmp_path / "notes")
    (root / "sub" / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(FormatError) as err:
        list(read_folder(root))
    assert str(err.value) == (f"{root / 'sub' / 'latin1.txt'}: not UTF-8 text (byte 3); "
                              "save it as UTF-8 or move it out of the folder")


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(FormatError) as err:
        read_folder(tmp_path / "missing")
    assert str(err.value) == (f"{tmp_path / 'missing'}: not a folder; expected a folder of "
                              ".txt, .md, .markdown, .html, .htm files")
