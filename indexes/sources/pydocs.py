"""The demo corpus: the local Python installation's own documentation, with no download.

Two sources, both already on every machine that runs pursuit:

* the pydoc topics (``pydoc_data.topics``): the language reference sections that
  ``help("assert")`` shows, one document each, ids ``topic:<name>``;
* the standard library: each public module's docstring (``module:json``), and each public
  class and function with a docstring (``module:json.dumps``, ``module:json.JSONDecoder``;
  a class's text includes its public methods).

Importing every stdlib module has side effects (``antigravity`` opens a browser, ``this``
prints, ``idlelib`` can start IDLE), so modules are imported in a child process with
stdout silenced, no display, no stdin and a time limit, and a skip list keeps the known
offenders out; modules that fail to import are left out. Documents longer than
``max_chars`` are split at paragraph breaks into passages whose ids end in ``#1``,
``#2``, ...; documents that fit keep their plain id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from typing import Any

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc

PYTHON_VERSION = ".".join(map(str, sys.version_info[:3]))

#: Packages and modules never imported: GUI, side effects on import, tests, legacy tools.
SKIP = frozenset({
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "tests",
    "idle_test", "lib2to3", "distutils", "ensurepip", "pydoc_data", "encodings", "msilib",
    "winreg", "winsound", "msvcrt", "nt", "ntpath", "nturl2path", "site", "sitecustomize",
    "usercustomize",
})
_CHILD_TIMEOUT_S = 120


def _module_names() -> list[str]:
    """Public stdlib module names, packages walked recursively (runs in the child)."""
    import importlib
    import pkgutil

    names: list[str] = []

    def add(name: str) -> None:
        parts = name.split(".")
        if any(p.startswith("_") or p in SKIP for p in parts):
            return
        try:
            module = importlib.import_module(name)
        except (Exception, SystemExit):  # a platform module missing here, or a broken one
            return
        names.append(name)
        for info in pkgutil.iter_modules(getattr(module, "__path__", None) or []):
            add(f"{name}.{info.name}")

    for top in sorted(sys.stdlib_module_names):
        add(top)
    add("os.path")  # how everyone names posixpath; sorts first, so it claims the functions
    return sorted(names)


class _Shown:
    """Stands in for a parameter default when the default's own repr must not be shown."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(obj: Any) -> str:
    import inspect

    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins without text signatures
        return ""
    # Some defaults print the process environment (cgi's environ=os.environ) or a memory
    # address (sentinel objects): neither belongs in a corpus, and both change per run.
    params = []
    for p in sig.parameters.values():
        if p.default is not inspect.Parameter.empty:
            shown = repr(p.default)
            if len(shown) > 60 or " at 0x" in shown:
                p = p.replace(default=_Shown(f"<{type(p.default).__name__}>"))
        params.append(p)
    return str(sig.replace(parameters=params))


def _entries() -> list[dict[str, str]]:
    """Every documented module, class and function, in a deterministic order (child)."""
    import importlib
    import inspect

    out: list[dict[str, str]] = []
    claimed: set[int] = set()  # an object re-exported by a later module stays with the first
    modules = _module_names()
    module_set = set(modules)
    for name in modules:
        module = importlib.import_module(name)
        if module.__doc__ and module.__doc__.strip():
            out.append({"kind": "module", "name": name, "module": name,
                        "text": inspect.cleandoc(module.__doc__)})
        exported = set(getattr(module, "__all__", ()) or ())
        for attr in sorted(vars(module)):
            obj = vars(module)[attr]
            if attr.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue
            home = getattr(obj, "__module__", None)
            # Keep what the module defines (or its C accelerator `_name` defines) or exports.
            if attr not in exported and home not in (name, f"_{name}"):
                continue
            doc = obj.__doc__ if isinstance(obj.__doc__, str) else None
            # `unittest.main` is both a submodule and an attribute; the submodule keeps the id.
            if not doc or not doc.strip() or id(obj) in claimed or f"{name}.{attr}" in module_set:
                continue
            claimed.add(id(obj))
            kind = "class" if inspect.isclass(obj) else "function"
            text = f"{'class ' if kind == 'class' else ''}{name}.{attr}{_signature(obj)}\n\n"
            text += inspect.cleandoc(doc)
            if kind == "class":
                for meth_name, meth in sorted(vars(obj).items()):
                    mdoc = getattr(meth, "__doc__", None)
                    if meth_name.startswith("_") or not isinstance(mdoc, str) or not mdoc.strip():
                        continue
                    if callable(meth) or isinstance(meth, classmethod | staticmethod | property):
                        body = inspect.cleandoc(mdoc).replace("\n", "\n    ")
                        text += f"\n\n{meth_name}{_signature(meth)}\n    {body}"
            out.append({"kind": kind, "name": f"{name}.{attr}", "module": name, "text": text})
    return out


def _child_main() -> None:
    """Entry point of the collecting child: JSON entries on the real stdout, nothing else."""
    import warnings

    real_stdout = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # anything an import prints goes nowhere
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the child
    warnings.simplefilter("ignore")
    json.dump(_entries(), real_stdout)
    real_stdout.flush()


@cache
def _collect_stdlib() -> tuple[dict[str, str], ...]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONWARNINGS"] = "ignore"
    code = "from pursuit.indexes.sources.pydocs import _child_main; _child_main()"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=_CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise PursuitError(f"collecting the standard library docs took over "
                           f"{_CHILD_TIMEOUT_S}s; use a BEIR folder or your own files") from e
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise PursuitError("collecting the standard library docs failed: " + " | ".join(tail))
    return tuple(json.loads(done.stdout))


def split_passages(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into passages of at most ``max_chars``, at paragraph breaks if possible.

    Paragraphs (blank-line separated) are packed greedily; a paragraph longer than
    ``max_chars`` is cut at line breaks, and a line longer than that at ``max_chars``.
    """
    # (separator before, piece): paragraphs rejoin with a blank line, cut lines with "\n".
    pieces: list[tuple[str, str]] = []
    for para in text.split("\n\n"):
        if len(para) <= max_chars:
            pieces.append(("\n\n", para))
            continue
        for j, line in enumerate(para.split("\n")):
            for i in range(0, max(len(line), 1), max_chars):
                pieces.append(("\n\n" if i == j == 0 else "\n", line[i:i + max_chars]))
    passages: list[str] = []
    current = ""
    for sep, piece in pieces:
        if current and len(current) + len(sep) + len(piece) > max_chars:
            passages.append(current)
            current = piece
        else:
            current = f"{current}{sep}{piece}" if current else piece
    passages.append(current)
    return [p.strip("\n") for p in passages if p.strip()]


def _topic_title(name: str, text: str) -> str:
    lines = text.splitlines()
    # Topic texts open with a reST heading: a line underlined with '*', '=' or '-'.
    if len(lines) > 1 and lines[1] and set(lines[1]) <= set("*=-") and lines[0].strip():
        return lines[0].strip()
    return name


def _raw_docs(stdlib: bool) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        text = topics[name]
        yield f"topic:{name}", _topic_title(name, text), text, {"kind": "topic"}
    for e in _collect_stdlib() if stdlib else ():
        yield f"module:{e['name']}", e["name"], e["text"], {"kind": e["kind"],
                                                            "module": e["module"]}


def python_docs(*, max_docs: int | None = None, max_chars: int = 2000,
                stdlib: bool = True) -> Iterator[Doc]:
    """Yield the demo corpus: pydoc topics, then stdlib modules, classes and functions.

    The order is deterministic for a given Python installation: topics by name, then
    modules by name, each module's members by name. ``metadata`` holds ``python`` (the
    version), ``kind`` (topic, module, class or function), ``module`` for stdlib documents,
    and ``part``/``parts`` for split documents.

    Args:
        max_docs: Stop after this many documents (passages count one each).
        max_chars: Longest passage; longer documents are split at paragraph breaks.
        stdlib: Include the standard library (set ``False`` for the topics alone; fast).

    Raises:
        PursuitError: Collecting the standard library docs failed or timed out.

    Example:
        >>> doc = next(python_docs())
        >>> doc.id, doc.title
        ('topic:assert', 'The "assert" statement')
    """
    count = 0
    for doc_id, title, text, meta in _raw_docs(stdlib):
        parts = split_passages(text, max_chars)
        for n, passage in enumerate(parts, start=1):
            if max_docs is not None and count >= max_docs:
                return
            extra = {"part": n, "parts": len(parts)} if len(parts) > 1 else {}
            yield Doc(
                id=f"{doc_id}#{n}" if len(parts) > 1 else doc_id,
                text=passage,
                title=title,
                metadata={"python": PYTHON_VERSION, **meta, **extra},
            )
            count += 1
