"""The textual form of a pipeline: ``"bm25%100 >> icr%10"`` to a :class:`Stage`.

The text is a Python expression over stage names, read with :func:`ast.parse` and built
from a whitelist of node kinds; nothing is ever evaluated. So precedence is exactly
Python's, as described in :mod:`pursuit.retrievers.stage`:

=================================  ==============================================
text                               stage
=================================  ==============================================
``bm25``                           the registry's ``bm25()``
``dense(model='all-MiniLM-L6-v2')`` ``dense(model='all-MiniLM-L6-v2')``: keyword
                                   options, constant values only
``bm25%100``                       top 100 (a positive integer)
``0.3*bm25``                       weight (a number on either side)
``0.3*bm25 + 0.7*dense``           min-max score fusion
``zscore(0.5*bm25 + 0.5*dense)``   the fusion with ``zscore`` / ``minmax`` / ``none``
``bm25%100 >> icr%10``             re-rank the left's candidates
``bm25%100 | dense%100``           reciprocal-rank fusion
=================================  ==============================================

Every stage's ``name`` reads back to a stage of the same name.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.stage import NORMALISERS, ScoreFusion, Stage, Weighted

_OPERATORS = ">>, |, +, * and %"


class PipelineError(PursuitError, ValueError):
    """A pipeline text that cannot be read; the message shows the text and the column."""

    def __init__(self, text: str, column: int | None, message: str) -> None:
        self.text, self.column = text, column
        if column is None:
            super().__init__(f"pipeline {text!r}: {message}")
        else:
            pointer = " " * (column - 1) + "^"
            super().__init__(f"pipeline column {column}: {message}\n  {text}\n  {pointer}")


Factory = Callable[..., Stage]


class _Builder:
    """Walks the parsed expression; one instance per :func:`parse_pipeline` call."""

    def __init__(self, text: str, registry: Mapping[str, Factory]) -> None:
        self.text, self.registry = text, registry
        # One stage per distinct name and options, so "bm25%100 | bm25" opens bm25 once.
        self.made: dict[tuple[str, tuple[tuple[str, Any], ...]], Stage] = {}

    def fail(self, node: ast.AST | None, message: str) -> PipelineError:
        if node is None or not hasattr(node, "col_offset"):
            return PipelineError(self.text, None, message)
        # col_offset counts UTF-8 bytes; the caret needs characters.
        column = len(self.text.encode()[: node.col_offset].decode(errors="ignore")) + 1
        return PipelineError(self.text, column, message)

    def snippet(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or type(node).__name__

    def available(self) -> str:
        names = ", ".join(sorted(self.registry)) or "(none)"
        return f"available stages: {names}; {', '.join(NORMALISERS)}(...) wrap a '+' fusion"

    # Numbers ----------------------------------------------------------------------
    def number(self, node: ast.expr) -> float | None:
        """The node's value if it is a (possibly negated) number, else None."""
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = self.number(node.operand)
            return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
        if (isinstance(node, ast.Constant) and isinstance(node.value, int | float)
                and not isinstance(node.value, bool)):
            return node.value
        return None

    # Stages -----------------------------------------------------------------------
    def stage(self, node: ast.expr) -> Stage:
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Name):
            if node.id in NORMALISERS:
                raise self.fail(node, f"{node.id} wraps a '+' fusion: {node.id}(0.5*a + 0.5*b)")
            return self.make(node, node.id, {})
        if isinstance(node, ast.Call):
            return self.call(node)
        if self.number(node) is not None:
            raise self.fail(node, f"expected a stage, found the number {self.snippet(node)}; "
                                  "a weight goes with '*', e.g. 0.3*bm25")
        raise self.fail(node, f"{self.snippet(node)!r} is not part of the pipeline language; "
                              f"combine stage names with {_OPERATORS}")

    def binop(self, node: ast.BinOp) -> Stage:
        op = node.op
        if isinstance(op, ast.Mod):
            k = node.right
            if not (isinstance(k, ast.Constant) and type(k.value) is int and k.value >= 1):
                raise self.fail(k, f"'%' needs a positive integer cutoff, found "
                                   f"{self.snippet(k)}, e.g. bm25%100")
            left = self.stage(node.left)
            if isinstance(left, Weighted) and left.weight > 0:
                # (w*s)%k and w*(s%k) rank alike, but only the second keeps w as a fusion
                # weight inside '+', which is what "0.3*bm25%100 + ..." means. Done only
                # where s%k prints without parentheses, so the name stays the same.
                inner = left.stage % k.value
                if inner.precedence == Stage.precedence:
                    return Weighted(inner, left.weight)
            return left % k.value
        if isinstance(op, ast.Mult):
            weight, other = self.number(node.left), node.right
            if weight is None:
                weight, other = self.number(node.right), node.left
            if weight is None:
                raise self.fail(node, "'*' takes a number and a stage, e.g. 0.3*bm25")
            if not math.isfinite(weight):
                raise self.fail(node, f"weight {weight} is not a finite number")
            return weight * self.stage(other)
        if isinstance(op, ast.Add | ast.RShift | ast.BitOr):
            left, right = self.stage(node.left), self.stage(node.right)
            if isinstance(op, ast.Add):
                return left + right
            return left >> right if isinstance(op, ast.RShift) else left | right
        symbol = {ast.Sub: "-", ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**",
                  ast.LShift: "<<", ast.BitAnd: "&", ast.BitXor: "^", ast.MatMult: "@"}
        raise self.fail(node, f"operator {symbol.get(type(op), type(op).__name__)!r} is not "
                              f"part of the pipeline language; use {_OPERATORS}")

    def call(self, node: ast.Call) -> Stage:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, f"{self.snippet(node.func)!r} cannot be called; "
                                  f"call a stage name, e.g. dense(model='all-MiniLM-L6-v2')")
        name = node.func.id
        if name in NORMALISERS:
            if len(node.args) != 1 or node.keywords:
                raise self.fail(node, f"{name}(...) takes one '+' fusion, e.g. "
                                      f"{name}(0.5*bm25 + 0.5*dense)")
            inner = self.stage(node.args[0])
            if not (isinstance(inner, ScoreFusion) and inner.normalisation == "minmax"):
                raise self.fail(node.args[0], f"{name}(...) wraps a '+' fusion, found "
                                              f"{self.snippet(node.args[0])!r}")
            return inner.normalised(name)
        if name not in self.registry:
            return self.make(node, name, {})  # raises the unknown-name error
        if node.args:
            raise self.fail(node.args[0], f"give {name}'s options by keyword, "
                                          f"e.g. {name}(k=100)")
        options: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail(kw.value, "'**' options are not allowed; name each option")
            value = kw.value
            number = self.number(value)
            if number is not None:
                options[kw.arg] = number
            elif isinstance(value, ast.Constant) and isinstance(value.value, str | bool | None):
                options[kw.arg] = value.value
            else:
                raise self.fail(value, f"option {kw.arg}= needs a constant (a number, a quoted "
                                       f"string, True, False or None), found "
                                       f"{self.snippet(value)}")
        return self.make(node, name, options)

    def make(self, node: ast.expr, name: str, options: dict[str, Any]) -> Stage:
        if name not in self.registry:
            close = difflib.get_close_matches(name, list(self.registry), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise self.fail(node, f"unknown stage {name!r}; {hint}{self.available()}")
        key = (name, tuple(sorted(options.items())))
        if key not in self.made:
            try:
                stage = self.registry[name](**options)
            except TypeError as err:
                raise self.fail(node, f"{name} rejected its options: {err}") from err
            if not isinstance(stage, Stage):
                raise self.fail(node, f"registry entry {name!r} returned "
                                      f"{type(stage).__name__}, not a Stage")
            self.made[key] = stage
        return self.made[key]


def parse_pipeline(text: str, registry: Mapping[str, Factory]) -> Stage:
    """Build the stage a pipeline text describes.

    Args:
        text: The pipeline, e.g. ``"bm25%100 >> icr%10"`` or ``"0.3*bm25 + 0.7*dense"``.
        registry: Stage name -> constructor taking keyword options (see
            :func:`pursuit.retrievers.registry.index_stages`).

    Returns:
        The composed stage; its ``name`` is the canonical text of the pipeline.

    Raises:
        PipelineError: A syntax error or a form outside the language (the message points
            at the column), an unknown stage name (the message lists the known ones), a
            cutoff that is not a positive integer, or options a constructor rejects.

    Example:
        >>> stage = parse_pipeline("bm25%100 | dense%100", index_stages(index))  # doctest: +SKIP
        >>> stage.name  # doctest: +SKIP
        'bm25%100 | dense%100'
    """
    flat = _flat(text)
    builder = _Builder(flat, registry)
    if not flat:
        raise PipelineError(text, None, f"empty pipeline; {builder.available()}")
    try:
        return builder.stage(_parse(flat))
    except RecursionError:
        raise PipelineError(flat[:40] + "...", None, f"the pipeline nests too deeply to read "
                            f"({len(flat):,} characters); fuse fewer stages") from None


def stage_names(text: str) -> set[str]:
    """The stage names a pipeline text uses, read from its syntax tree; nothing is built.

    Lets a caller prepare what the named stages need (an index's vectors, say) before the
    pipeline is built. Names are not checked against a registry: :func:`parse_pipeline`
    reports unknown ones.

    Raises:
        PipelineError: the text is empty or has a syntax error.

    Example:
        >>> sorted(stage_names("zscore(0.3*bm25%100 + 0.7*dense(k=50)) >> icr%10"))
        ['bm25', 'dense', 'icr']
    """
    flat = _flat(text)
    if not flat:
        raise PipelineError(text, None, "empty pipeline")
    names: set[str] = set()
    todo = [_parse(flat)]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Call):  # options are constants, not stages
            todo += [node.func, *node.args]
        elif isinstance(node, ast.BinOp):
            todo += [node.left, node.right]
        elif isinstance(node, ast.UnaryOp):
            todo.append(node.operand)
    return names - set(NORMALISERS)


def _flat(text: str) -> str:
    # Newlines would end the expression early; spaces keep the columns where they were.
    return text.replace("\r", " ").replace("\n", " ").strip()


def _parse(flat: str) -> ast.expr:
    try:
        return ast.parse(flat, mode="eval").body
    except (RecursionError, MemoryError):
        raise PipelineError(flat[:40] + "...", None, f"the pipeline nests too deeply to read "
                            f"({len(flat):,} characters); fuse fewer stages") from None
    except SyntaxError as err:
        column = min(max(err.offset or 1, 1), len(flat) + 1)
        raise PipelineError(flat, column, f"syntax error: {err.msg}") from None


def largest_depth(text: str) -> int:
    """The largest number of documents a pipeline text asks any stage for: its ``%`` cutoffs
    and its ``k=`` options (``0`` when it names neither). Nothing is built.

    Lets a server refuse a pipeline deeper than it allows before any memory is sized by it.

    Raises:
        PipelineError: the text is empty or has a syntax error.

    Example:
        >>> largest_depth("bm25%100 >> icr%10 | dense(k=500)")
        500
    """
    flat = _flat(text)
    if not flat:
        raise PipelineError(text, None, "empty pipeline")
    depth = 0
    for node in ast.walk(_parse(flat)):
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod)
                and isinstance(node.right, ast.Constant) and isinstance(node.right.value, int)):
            depth = max(depth, node.right.value)
        elif isinstance(node, ast.keyword) and node.arg == "k" \
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, int):
            depth = max(depth, node.value.value)
    return depth
