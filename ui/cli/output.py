"""What the ``pursuit`` commands print: the shared console, JSON output, and rankings.

Shared by :mod:`pursuit.ui.cli.app` and its sub-command modules (:mod:`pursuit.ui.cli.train`),
so every command prints the same way: readable text on the terminal, one JSON document
on standard output with ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from pursuit.indexes.records import Ranking

__all__ = ["JsonOpt", "close_and_report", "console", "emit", "index_summary", "print_ranking",
           "ranking_json"]

#: Messages, progress and errors go to standard error; standard output stays for results.
console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]


def emit(payload: Any) -> None:
    """Print ``payload`` as one JSON document on standard output.

    Example:
        >>> emit({"n_docs": 3})
        {
          "n_docs": 3
        }
    """
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


def close_and_report(index: Any, as_json: bool, message: Callable[[int], str]) -> None:
    """Close ``index`` after a change and report it: its summary as JSON with ``--json``,
    else ``message(number of documents)``."""
    summary = index_summary(index)
    index.close()
    emit(summary) if as_json else console.print(message(summary["n_docs"]))


def index_summary(index: Any) -> dict[str, Any]:
    """An index's path, size, source, corpus checksum and components, as plain data."""
    m = index.manifest
    return {"index": str(index.path), "n_docs": m.n_docs, "source": m.source,
            "corpus_sha256": m.corpus_sha256, "components": sorted(m.components)}


def ranking_json(ranking: Ranking) -> dict[str, Any]:
    """A ranking as plain data: query, pipeline, index and hits with their documents."""
    return {"query": ranking.query.text, "pipeline": ranking.provenance.pipeline,
            "index": ranking.provenance.index,
            "hits": [{"rank": i, "id": h.doc_id, "score": h.score,
                      "title": h.doc.title if h.doc else None,
                      "url": h.doc.url if h.doc else None,
                      "published_at": h.doc.published_at if h.doc else None,
                      "text": h.doc.text if h.doc else None}
                     for i, h in enumerate(ranking, start=1)]}


def print_ranking(ranking: Ranking) -> None:
    """A ranking for people: rank, title, id, score and the start of each document."""
    # Document text is data, never markup: build Text objects instead of markup strings.
    out = Console()
    out.print(Text(ranking.query.text, style="bold") + Text(f"  ({ranking.provenance.pipeline})",
                                                           style="dim"))
    for i, hit in enumerate(ranking, start=1):
        doc = hit.doc
        title = (doc.title or doc.id) if doc else hit.doc_id
        out.print(Text(f"{i:>3}. ") + Text(title, style="cyan")
                  + Text(f"  {hit.doc_id}  score {hit.score:.4f}", style="dim"), highlight=False)
        if doc:
            out.print(Text("     " + " ".join(doc.text.split())[:200]), highlight=False)
    if not ranking.hits:
        out.print("no results")
