"""Read a folder of a user's own text, Markdown and HTML files as documents."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from bs4 import BeautifulSoup

from pursuit.indexes.errors import FormatError
from pursuit.indexes.records import Doc

#: File suffixes :func:`read_folder` reads (compared case-insensitively).
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm")
_HTML = (".html", ".htm")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
# Elements whose content is code or markup, not readable text.
_NOT_TEXT = ("script", "style", "noscript", "template")
_BLOCK = ("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
          "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
          "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul")


def list_files(root: str | Path, suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> list[Path]:
    """The files :func:`read_folder` reads under ``root``, sorted by relative path.

    Hidden files and folders (names starting with ``.``) are skipped.
    """
    root = Path(root)
    suffixes = tuple(s.lower() for s in suffixes)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden folders (.git, .venv) and hidden files are tooling, not the user's documents.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, f) for f in filenames
                     if not f.startswith(".") and f.lower().endswith(suffixes))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _markdown_title(text: str) -> str | None:
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence  # a '#' inside a code block is a comment, not a heading
        elif not in_fence and (m := _MD_HEADING.match(line)):
            return m.group(1)
    return None


def _html_title_and_text(html: str) -> tuple[str | None, str]:
    soup = BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text(" ").split()) if title_tag else None
    for tag in soup.find_all(["title", *_NOT_TEXT]):
        tag.decompose()
    # Line breaks around block elements only, so inline markup (<b>, <a>) stays in its line.
    for tag in soup.find_all(_BLOCK):
        tag.insert_before("\n")
        tag.insert_after("\n")
    lines = (" ".join(line.split()) for line in soup.get_text().splitlines())
    return title or None, "\n".join(line for line in lines if line)


def read_file(path: str | Path, root: str | Path | None = None) -> Doc:
    """Read one ``.txt``, ``.md`` or ``.html`` file as a document.

    Args:
        path: The file.
        root: Folder that ids are relative to; defaults to the file's folder.

    Returns:
        A :class:`Doc` with id = path relative to ``root`` (``/``-separated), title = first
        Markdown heading / HTML ``<title>`` / file stem, the text (HTML tags, scripts and
        styles removed), url = the file URI, and metadata ``{"mtime": ISO UTC time}``.

    Raises:
        FormatError: The file is not UTF-8 text.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError(path, None, f"not UTF-8 text (byte {e.start}); save it as UTF-8 or "
                          "move it out of the folder") from e
    suffix = path.suffix.lower()
    if suffix in _HTML:
        title, text = _html_title_and_text(raw)
    else:
        title = _markdown_title(raw) if suffix in (".md", ".markdown") else None
        text = raw.strip()
    mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return Doc(
        id=path.relative_to(root).as_posix(),
        text=text,
        title=title or path.stem,
        url=path.resolve().as_uri(),
        published_at=None,  # a file's mtime says when it was saved, not published
        metadata={"mtime": mtime.isoformat()},
    )


def read_folder(path: str | Path, *, suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> Iterator[Doc]:
    """Yield a document per text file under ``path``, recursively, sorted by relative path.

    Hidden files and folders (names starting with ``.``) are skipped; so are files whose
    suffix is not in ``suffixes``.

    Args:
        path: The folder.
        suffixes: Which file suffixes to read, lower case with the dot.

    Raises:
        FormatError: ``path`` is not a folder, or a file in it is not UTF-8 text.

    Example:
        >>> [d.id for d in read_folder("notes")]  # doctest: +SKIP
        ['a.md', 'sub/page.html']
    """
    root = Path(path)
    if not root.is_dir():
        raise FormatError(root, None, "not a folder; expected a folder of "
                          f"{', '.join(TEXT_SUFFIXES)} files")
    return (read_file(p, root) for p in list_files(root, suffixes))
