"""Typed answers from a chat model: tolerant JSON extraction, validation, and repair turns.

Small models wrap JSON in fences and prose, leave trailing commas, or write Python's
``True``/``None``. :func:`extract_json` reads past all of that without ever evaluating
the text; :func:`structured` validates the result against a pydantic model and, when it
does not fit, shows the model its error and asks again.

Example:
    >>> from pursuit.agent.llm.contract import ScriptedLLM
    >>> class Answer(BaseModel):
    ...     city: str
    >>> llm = ScriptedLLM(['Sure! ```json\\n{"city": "Paris",}\\n```'])
    >>> structured(llm, [user("Capital of France? " + schema_hint(Answer))], Answer).value
    Answer(city='Paris')
"""

from __future__ import annotations

import enum
import json
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from pursuit.agent.llm.contract import LLMClient, Message, user
from pursuit.indexes.errors import PursuitError

__all__ = ["Structured", "StructuredOutputError", "extract_json", "schema_hint", "structured"]

T = TypeVar("T", bound=BaseModel)
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d\u201c", "\u201d": "\u201d\u201c",
           "\u2018": "\u2019\u2018", "\u2019": "\u2019\u2018"}
_WORDS = {"True": "true", "False": "false", "None": "null"}
_CLOSERS = {"{": "}", "[": "]"}
#: How many opening brackets :func:`extract_json` tries before giving up on a long text.
_MAX_STARTS = 200


class StructuredOutputError(PursuitError):
    """A model's reply held no JSON, or no JSON that fits the expected schema."""


@dataclass(frozen=True)
class Structured(Generic[T]):
    """A validated answer and what it took to get it.

    Attributes:
        value: The validated model instance.
        attempts: Requests made (1 when the first reply fitted).
        raw: The model's raw reply to each request, in order.
        prompt_tokens: Prompt tokens over all requests.
        completion_tokens: Generated tokens over all requests.
    """

    value: T
    attempts: int
    raw: tuple[str, ...]
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _candidates(text: str) -> list[str]:
    """Fenced blocks first (what the model marked as the answer), then the whole text."""
    return [m.group(1) for m in _FENCE.finditer(text)] + [text]


def _span(text: str, start: int) -> tuple[str, str] | None:
    """The bracketed value at ``start``: its raw text and a repaired JSON version.

    The repair, applied only outside strings, drops trailing commas, maps ``True`` /
    ``False`` / ``None`` to JSON, and turns single- or smart-quoted strings into JSON ones.
    """
    out: list[str] = []
    stack: list[str] = []
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c in _QUOTES:
            closers, j, chars = _QUOTES[c], i + 1, []
            while j < n and text[j] not in closers:
                if text[j] == "\\" and j + 1 < n:
                    chars.append(text[j:j + 2])
                    j += 1
                else:
                    chars.append(text[j])
                j += 1
            if j >= n:
                return None
            body = "".join(chars)
            if c != '"':  # re-quote: unescape \' and escape bare double quotes
                body = re.sub(r'(?<!\\)"', r'\\"', body.replace("\\'", "'"))
            out.append('"' + body + '"')
            i = j + 1
            continue
        if c in _CLOSERS:
            stack.append(_CLOSERS[c])
        elif c in "}]":
            if not stack or stack.pop() != c:
                return None
            k = len(out) - 1
            while k >= 0 and out[k].isspace():
                k -= 1
            if k >= 0 and out[k] == ",":
                del out[k]
            out.append(c)
            if not stack:
                return text[start:i + 1], "".join(out)
            i += 1
            continue
        elif c.isalpha() or c == "_":
            word = re.match(r"\w+", text[i:])
            assert word is not None
            out.append(_WORDS.get(word.group(0), word.group(0)))
            i += len(word.group(0))
            continue
        out.append(c)
        i += 1
    return None


def extract_json(text: str) -> Any:
    """The first JSON object or array in a model's reply, read tolerantly.

    Handles `````json`` fences, prose before and after, trailing commas, Python's
    ``True``/``False``/``None``, and single or smart quotes. The text is only parsed,
    never evaluated.

    Args:
        text: The model's reply.

    Returns:
        The parsed object (``dict``) or array (``list``).

    Raises:
        StructuredOutputError: nothing in ``text`` parses as a JSON object or array.

    Example:
        >>> extract_json('Here you go: {"ok": True, "ids": [1, 2,],} Hope it helps!')
        {'ok': True, 'ids': [1, 2]}
    """
    for candidate in _candidates(text):
        starts = [i for i, c in enumerate(candidate) if c in _CLOSERS][:_MAX_STARTS]
        for start in starts:
            span = _span(candidate, start)
            if span is None:
                continue
            for attempt in span:
                try:
                    return json.loads(attempt, strict=False)
                except ValueError:
                    continue
    preview = text.strip()[:200]
    raise StructuredOutputError(f"the model's reply holds no JSON object or array: {preview!r}; "
                                "ask for JSON only (see schema_hint)")


def _type_hint(annotation: Any, seen: set[type]) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is None or annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return annotation.__name__
        fields = []
        for name, info in annotation.model_fields.items():
            key = json.dumps(info.alias or name) + ("" if info.is_required() else "?")
            fields.append(f"{key}: {_type_hint(info.annotation, seen | {annotation})}")
        return "{" + ", ".join(fields) + "}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "|".join(json.dumps(m.value) for m in annotation)
    if origin is Literal:
        return "|".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return "|".join(_type_hint(a, seen) for a in args)
    if origin in (list, set, frozenset, tuple, Sequence) or annotation in (list, tuple, set):
        inner = [a for a in args if a is not Ellipsis]
        return "[" + (_type_hint(inner[0], seen) if inner else "any") + "]"
    if origin is dict or annotation is dict:
        return "{string: " + (_type_hint(args[1], seen) if len(args) == 2 else "any") + "}"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(annotation, "any")


def schema_hint(schema: type[BaseModel]) -> str:
    """A compact picture of the JSON ``schema`` expects, for prompts.

    Optional fields carry a ``?`` after the name; lists show their item type in brackets.

    Example:
        >>> class Step(BaseModel):
        ...     question: str
        ...     depends_on: list[int] = []
        >>> schema_hint(Step)
        '{"question": string, "depends_on"?: [integer]}'
    """
    return _type_hint(schema, set())


def _problems(exc: ValidationError, limit: int = 5) -> str:
    """Validation errors as ``field.path: message``, the first ``limit`` of them."""
    parts = []
    for error in exc.errors()[:limit]:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        parts.append(f"{path.lstrip('.') or '(top level)'}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def structured(llm: LLMClient, messages: Sequence[Message], schema: type[T], *,
               retries: int = 2, max_tokens: int = 512) -> Structured[T]:
    """Ask ``llm`` and return its reply validated as ``schema``, repairing on failure.

    A reply that holds no JSON or does not validate is answered with the error (field
    paths and messages) and a request for corrected JSON only, up to ``retries`` times.

    Args:
        llm: The chat model.
        messages: The conversation; its prompt should describe the JSON wanted (see
            :func:`schema_hint`).
        schema: The pydantic model the answer must fit.
        retries: Repair turns after the first request.
        max_tokens: Generation budget of each request.

    Returns:
        The value with the attempts, raw replies and token totals.

    Raises:
        StructuredOutputError: no reply fitted; names the last error.
        LLMError: the model itself failed.

    Example:
        >>> from pursuit.agent.llm.contract import ScriptedLLM
        >>> class Answer(BaseModel):
        ...     n: int
        >>> structured(ScriptedLLM(['{"n": "five"}', '{"n": 5}']), [user("2+3?")], Answer).attempts
        2
    """
    conversation = [dict(m) for m in messages]
    raw: list[str] = []
    prompt_tokens = completion_tokens = 0
    problem = ""
    for _ in range(retries + 1):
        reply = llm.complete(conversation, max_tokens=max_tokens, temperature=0.0)
        raw.append(reply.text)
        prompt_tokens += reply.prompt_tokens
        completion_tokens += reply.completion_tokens
        try:
            value = schema.model_validate(extract_json(reply.text))
        except StructuredOutputError:
            problem = "it holds no JSON object or array"
        except ValidationError as exc:
            problem = _problems(exc)
        else:
            return Structured(value, len(raw), tuple(raw), prompt_tokens, completion_tokens)
        conversation += [{"role": "assistant", "content": reply.text},
                         user(f"That reply does not fit: {problem}. Answer again with the "
                              f"corrected JSON only, shaped as {schema_hint(schema)}")]
    raise StructuredOutputError(f"{llm.name} gave no valid {schema.__name__} JSON in {len(raw)} "
                                f"attempt{'s' if len(raw) != 1 else ''}; last error: {problem}")
