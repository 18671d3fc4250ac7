"""Core records passed between every stage of pursuit.

All records are frozen dataclasses: plain data, safe to share between threads and to
serialise. Scores in a :class:`Ranking` are always sorted in descending order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np


def strictly_decreasing(scores: Iterable[float]) -> list[float]:
    """Scores in the given order, each lowered where needed to stay below the one before.

    A score that is not below its predecessor *at single precision* becomes the next
    float32 below it: a step that survives readers which parse scores as float32
    (pytrec_eval), so a tie is never re-sorted by document id downstream. Scores must be
    finite.

    Example:
        >>> strictly_decreasing([2.0, 2.0, 1.0])
        [2.0, 1.9999998807907104, 1.0]
    """
    out: list[float] = []
    prev32 = np.float32(np.inf)
    for score in scores:
        v = float(score)
        if np.float32(v) >= prev32:
            v = float(np.nextafter(prev32, np.float32(-np.inf)))
        out.append(v)
        prev32 = np.float32(v)
    return out


@dataclass(frozen=True)
class Doc:
    """A document of a corpus.

    Attributes:
        id: Unique id within the corpus.
        text: Body text.
        title: Title, empty when the source has none.
        url: Where the document came from, if known.
        published_at: Publication time (timezone-aware, UTC) if known.
        metadata: Any other fields of the source record (JSON-serialisable values).
    """

    id: str
    text: str
    title: str = ""
    url: str | None = None
    published_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def contents(self) -> str:
        """Title and text joined the way every index sees them."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Query:
    """A search query.

    Attributes:
        id: Query id (benchmarks use their own ids; ad-hoc queries get ``"q"``).
        text: The query text.
        metadata: Extra fields, e.g. ``{"as_of": "2023-11-01"}`` or benchmark annotations.
    """

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, query: Query | str) -> Query:
        """Return ``query`` as a :class:`Query`; a bare string gets the id ``"q"``."""
        return query if isinstance(query, Query) else cls(id="q", text=query)


@dataclass(frozen=True)
class Hit:
    """One scored document in a ranking. ``doc`` is filled when the stage fetched it."""

    doc_id: str
    score: float
    doc: Doc | None = None


@dataclass(frozen=True)
class Provenance:
    """Where a ranking came from: which pipeline, over which index, and when."""

    pipeline: str
    index: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


@dataclass(frozen=True)
class Ranking:
    """The ranked hits for one query, best first, with provenance."""

    query: Query
    hits: tuple[Hit, ...]
    provenance: Provenance

    @classmethod
    def from_scores(
        cls,
        query: Query,
        scored: Iterable[tuple[str, float]],
        *,
        pipeline: str,
        index: str | None = None,
        docs: Mapping[str, Doc] | None = None,
    ) -> Ranking:
        """Build a ranking from ``(doc_id, score)`` pairs in any order.

        Sorting is by score descending, then doc id ascending, so equal scores always come
        out in the same order.
        """
        pairs = sorted(scored, key=lambda p: (-p[1], p[0]))
        hits = tuple(Hit(d, float(s), docs.get(d) if docs else None) for d, s in pairs)
        return cls(query, hits, Provenance(pipeline, index))

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def doc_ids(self) -> list[str]:
        """Document ids, best first."""
        return [h.doc_id for h in self.hits]

    def scores(self) -> dict[str, float]:
        """Mapping of document id to score."""
        return {h.doc_id: h.score for h in self.hits}

    def top(self, k: int) -> Ranking:
        """The first ``k`` hits, with the same provenance."""
        return replace(self, hits=self.hits[:k])

    def with_pipeline(self, pipeline: str) -> Ranking:
        """The same hits attributed to ``pipeline``."""
        return replace(self, provenance=replace(self.provenance, pipeline=pipeline))
