"""The ``Stage`` contract and the pipeline algebra.

A stage turns a query (and optionally the candidates of an earlier stage) into a
:class:`~pursuit.indexes.records.Ranking`. Stages compose with Python operators:

======  ==========================================  ==============================
form    meaning                                     example
======  ==========================================  ==============================
``%``   cutoff: keep the top ``k``                  ``bm25 % 100``
``*``   weight for score fusion                     ``0.3 * bm25``
``+``   weighted score fusion (min-max normalised)  ``0.3 * bm25 + 0.7 * dense``
``>>``  then: the right stage re-scores the left's  ``bm25 % 100 >> icr % 10``
``|``   reciprocal-rank fusion (k = 60)             ``bm25 % 100 | dense % 100``
======  ==========================================  ==============================

Precedence is Python's: ``*`` and ``%`` bind tightest, then ``+``, then ``>>``, then
``|``. So ``bm25 % 100 >> icr % 10`` reads ``(bm25 % 100) >> (icr % 10)`` and
``bm25 % 100 >> icr | dense`` reads ``((bm25 % 100) >> icr) | dense``. Each stage's
``name`` is its textual form, which :func:`pursuit.retrievers.pipeline_parser.parse_pipeline`
reads back.

Example:
    >>> pipeline = bm25 % 100 >> icr % 10          # doctest: +SKIP
    >>> ranking = pipeline.search("what causes tides?")   # doctest: +SKIP
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np

from pursuit.indexes.records import Hit, Query, Ranking

#: How deep a retriever searches when no cutoff was given (``bm25`` rather than ``bm25%100``).
DEFAULT_DEPTH = 1000

# Operator precedence levels, used to print names with just the parentheses they need.
_PREC_OR, _PREC_THEN, _PREC_ADD, _PREC_MUL, _PREC_ATOM = 1, 2, 3, 4, 5


def _wrap(stage: Stage, prec: int) -> str:
    return f"({stage.name})" if stage.precedence < prec else stage.name


class Stage(ABC):
    """Something that ranks documents for a query.

    Subclasses implement :meth:`transform`; ``search``, ``rerank`` and ``batch`` follow.
    """

    precedence: int = _PREC_ATOM

    @property
    @abstractmethod
    def name(self) -> str:
        """The stage's textual form, e.g. ``"bm25%100 >> icr%10"``."""

    @abstractmethod
    def transform(self, query: Query, candidates: Ranking | None) -> Ranking:
        """Rank documents for ``query``.

        Args:
            query: The query.
            candidates: The ranking of an earlier stage, or ``None`` for a first stage.
                A stage given candidates ranks those documents only.
        """

    def search(self, query: Query | str) -> Ranking:
        """Rank the collection for one query (a first-stage call)."""
        return self.transform(Query.coerce(query), None)

    def rerank(self, query: Query | str, hits: Ranking | Sequence[Hit]) -> Ranking:
        """Re-rank the given hits for ``query``."""
        q = Query.coerce(query)
        if not isinstance(hits, Ranking):
            hits = Ranking.from_scores(q, [(h.doc_id, h.score) for h in hits], pipeline="input")
        return self.transform(q, hits)

    def batch(
        self, queries: Sequence[Query | str], candidates: Sequence[Ranking] | None = None
    ) -> list[Ranking]:
        """Rank many queries. Stages with a vectorised path override this."""
        qs = [Query.coerce(q) for q in queries]
        if candidates is None:
            return [self.transform(q, None) for q in qs]
        if len(candidates) != len(qs):
            raise ValueError(f"batch got {len(qs)} queries but {len(candidates)} candidate lists")
        return [self.transform(q, c) for q, c in zip(qs, candidates, strict=True)]

    def limited(self, k: int) -> Stage:
        """This stage cut to its top ``k``; retrievers override it to search only ``k`` deep."""
        return Cutoff(self, k)

    # Operators -------------------------------------------------------------------
    def __rshift__(self, other: Stage) -> Stage:
        return Then(self, _check_stage(other, ">>"))

    def __mod__(self, k: int) -> Stage:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"cutoff must be a positive integer, got {k!r}")
        return self.limited(k)

    def __mul__(self, weight: float) -> Stage:
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            return NotImplemented
        return Weighted(self, float(weight))

    __rmul__ = __mul__

    def __add__(self, other: Stage) -> Stage:
        return ScoreFusion.of(self, _check_stage(other, "+"))

    def __or__(self, other: Stage) -> Stage:
        return RRF.of(self, _check_stage(other, "|"))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _check_stage(other: object, op: str) -> Stage:
    if not isinstance(other, Stage):
        raise TypeError(f"'{op}' needs a Stage on both sides, got {type(other).__name__}")
    return other


class Retriever(Stage):
    """A first stage over an index: searches ``k`` deep, or re-scores given candidates.

    Subclasses implement :meth:`retrieve` and :meth:`score`, and may override
    :meth:`retrieve_batch` with a vectorised path.
    """

    #: Name of the retriever in the textual pipeline form (``"bm25"``, ``"dense"``).
    label: str = "retriever"
    #: The cutoff given (``k=100`` or ``bm25%100``), or ``None``: none was given, and the
    #: retriever searches :data:`DEFAULT_DEPTH` deep. The name shows ``%cutoff`` when set.
    cutoff: int | None = None
    #: Index path recorded in the provenance of every ranking.
    index_name: str | None = None

    #: The options the pipeline text named, e.g. ``{"model": "..."}``: the name shows
    #: exactly these. Subclasses take them as the constructor argument ``options``.
    options: Mapping[str, object] = {}

    @property
    def k(self) -> int:
        """How deep the retriever searches: its cutoff, else :data:`DEFAULT_DEPTH`."""
        return DEFAULT_DEPTH if self.cutoff is None else self.cutoff

    @property
    def name(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in sorted(self.options.items()))
        base = f"{self.label}({args})" if args else self.label
        return base if self.cutoff is None else f"{base}%{self.cutoff}"

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return _PREC_ATOM if self.cutoff is None else _PREC_MUL

    @abstractmethod
    def retrieve(self, query: Query, k: int) -> Ranking:
        """The top ``k`` documents of the collection for ``query``."""

    @abstractmethod
    def score(self, query: Query, doc_ids: Sequence[str]) -> np.ndarray:
        """Scores of the given documents for ``query`` (same order as ``doc_ids``)."""

    def retrieve_batch(self, queries: Sequence[Query], k: int) -> list[Ranking]:
        """The top ``k`` for each query; override with a vectorised path."""
        return [self.retrieve(q, k) for q in queries]

    def transform(self, query: Query, candidates: Ranking | None) -> Ranking:
        if candidates is None:
            return self.retrieve(query, self.k)
        ids = candidates.doc_ids()
        scores = self.score(query, ids) if ids else np.zeros(0)
        docs = {h.doc_id: h.doc for h in candidates if h.doc is not None}
        ranking = Ranking.from_scores(
            query, zip(ids, scores.tolist(), strict=True), pipeline=self.name,
            index=self.index_name, docs=docs,
        )
        return ranking.top(self.k)

    def batch(
        self, queries: Sequence[Query | str], candidates: Sequence[Ranking] | None = None
    ) -> list[Ranking]:
        if candidates is not None:
            return super().batch(queries, candidates)
        return self.retrieve_batch([Query.coerce(q) for q in queries], self.k)

    def limited(self, k: int) -> Stage:
        clone = copy.copy(self)
        clone.cutoff = k if self.cutoff is None else min(k, self.cutoff)
        return clone


class Cutoff(Stage):
    """The top ``k`` hits of another stage."""

    precedence = _PREC_MUL

    def __init__(self, stage: Stage, k: int) -> None:
        self.stage, self.k = stage, k

    @property
    def name(self) -> str:
        return f"{_wrap(self.stage, _PREC_MUL)}%{self.k}"

    def transform(self, query: Query, candidates: Ranking | None) -> Ranking:
        return self.stage.transform(query, candidates).top(self.k).with_pipeline(self.name)

    def batch(self, queries, candidates=None):  # type: ignore[no-untyped-def]
        return [r.top(self.k).with_pipeline(self.name) for r in self.stage.batch(queries, candidates)]


class Then(Stage):
    """``left >> right``: the right stage ranks the left stage's output."""

    precedence = _PREC_THEN

    def __init__(self, left: Stage, right: Stage) -> None:
        self.left, self.right = left, right

    @property
    def name(self) -> str:
        return f"{_wrap(self.left, _PREC_THEN)} >> {_wrap(self.right, _PREC_THEN + 1)}"

    def transform(self, query: Query, candidates: Ranking | None) -> Ranking:
        first = self.left.transform(query, candidates)
        return self.right.transform(query, first).with_pipeline(self.name)

    def batch(self, queries, candidates=None):  # type: ignore[no-untyped-def]
        first = self.left.batch(queries, candidates)
        return [r.with_pipeline(self.name) for r in self.right.batch(queries, first)]


class Weighted(Stage):
    """``w * stage``: the stage's scores times ``w``; inside ``+`` it is the fusion weight."""

    precedence = _PREC_MUL

    def __init__(self, stage: Stage, weight: float) -> None:
        self.stage, self.weight = stage, weight

    @property
    def name(self) -> str:
        return _weighted_name(self.weight, self.stage)

    def transform(self, query: Query, candidates: Ranking | None) -> Ranking:
        r = self.stage.transform(query, candidates)
        return _scaled(r, self.weight, self.name)

    def limited(self, k: int) -> Stage:
        # Python reads ``0.3*bm25%100`` as ``(0.3*bm25)%100``; the user means a weight on
        # ``bm25%100``. For positive weights both keep the same hits, so push the cutoff in.
        return Weighted(self.stage.limited(k), self.weight) if self.weight > 0 else Cutoff(self, k)

    def batch(self, queries, candidates=None):  # type: ignore[no-untyped-def]
        return [_scaled(r, self.weight, self.name) for r in self.stage.batch(queries, candidates)]


def _scaled(r: Ranking, w: float, name: str) -> Ranking:
    docs = {h.doc_id: h.doc for h in r if h.doc is not None}
    return Ranking.from_scores(r.query, [(h.doc_id, w * h.score) for h in r],
                               pipeline=name, index=r.provenance.index, docs=docs)


NORMALISERS = ("minmax", "zscore", "none")


def normalise(scores: np.ndarray, method: str) -> np.ndarray:
    """Normalise one ranking's scores: ``minmax`` to [0, 1], ``zscore``, or ``none``.

    A constant list normalises to all ones under ``minmax`` and all zeros under ``zscore``.
    """
    if method == "none" or scores.size == 0:
        return scores.astype(np.float64)
    if method == "minmax":
        lo, hi = float(scores.min()), float(scores.max())
        return np.ones_like(scores, dtype=np.float64) if hi == lo else (scores - lo) / (hi - lo)
    if method == "zscore":
        sd = float(scores.std())
        return np.zeros_like(scores, dtype=np.float64) if sd == 0 else (scores - scores.mean()) / sd
    raise ValueError(f"unknown normalisation {method!r}; choose one of {', '.join(NORMALISERS)}")


class _Fusion(Stage):
    """Shared machinery of the fusion stages: run members, merge their rankings."""

    def __init__(self, members: Sequence[tuple[float, Stage]]) -> None:
        self.members = list(members)

    def transform(self, query: Query, candidates: Ranking | None) -> Ranking:
        return self._fuse([m.transform(query, candidates) for _, m in self.members])

    def batch(self, queries, candidates=None):  # type: ignore[no-untyped-def]
        per_member = [m.batch(queries, candidates) for _, m in self.members]
        return [self._fuse(list(rs)) for rs in zip(*per_member, strict=True)]

    def _fuse(self, rankings: list[Ranking]) -> Ranking:
        contribs = self._contributions(rankings)
        all_ids = set().union(*(c.keys() for c, _ in contribs))
        total = dict.fromkeys(all_ids, 0.0)
        for (weight, _), (contrib, floor) in zip(self.members, contribs, strict=True):
            for doc_id in all_ids:
                total[doc_id] += weight * contrib.get(doc_id, floor)
        docs = {h.doc_id: h.doc for r in rankings for h in r if h.doc is not None}
        return Ranking.from_scores(rankings[0].query, total.items(), pipeline=self.name,
                                   index=rankings[0].provenance.index, docs=docs)

    @abstractmethod
    def _contributions(self, rankings: list[Ranking]) -> list[tuple[dict[str, float], float]]:
        """Per member: document -> contribution before weighting, and the value for a miss."""


class ScoreFusion(_Fusion):
    """Weighted sum of per-query normalised scores (``a + b``, ``0.3*a + 0.7*b``).

    A document missing from a member's ranking gets that member's lowest normalised score.
    """

    precedence = _PREC_ADD

    def __init__(self, members: Sequence[tuple[float, Stage]], normalisation: str = "minmax"):
        super().__init__(members)
        normalise(np.zeros(1), normalisation)  # validates the name
        self.normalisation = normalisation

    @classmethod
    def of(cls, left: Stage, right: Stage) -> ScoreFusion:
        """Flatten ``left + right`` into one fusion with one weight per member."""
        return cls(_terms(left) + _terms(right))

    def normalised(self, method: str) -> ScoreFusion:
        """The same fusion with another normalisation (``minmax``, ``zscore``, ``none``)."""
        return ScoreFusion(self.members, method)

    @property
    def name(self) -> str:
        body = " + ".join(_term_name(w, s) for w, s in self.members)
        return body if self.normalisation == "minmax" else f"{self.normalisation}({body})"

    def _contributions(self, rankings: list[Ranking]) -> list[tuple[dict[str, float], float]]:
        out = []
        for r in rankings:
            norm = normalise(np.array([h.score for h in r], dtype=np.float64), self.normalisation)
            floor = float(norm.min()) if norm.size else 0.0
            out.append((dict(zip(r.doc_ids(), norm.tolist(), strict=True)), floor))
        return out


def _terms(stage: Stage) -> list[tuple[float, Stage]]:
    """Members of a ``+`` fusion: a plain min-max fusion is flattened into its members."""
    if isinstance(stage, ScoreFusion) and stage.normalisation == "minmax":
        return list(stage.members)
    return [_weighted(stage)]


def _weighted(stage: Stage) -> tuple[float, Stage]:
    """``w * s`` as ``(w, s)``; any other stage has weight 1."""
    return (stage.weight, stage.stage) if isinstance(stage, Weighted) else (1.0, stage)


def _term_name(weight: float, stage: Stage, prec: int = _PREC_ADD + 1) -> str:
    return _wrap(stage, prec) if weight == 1.0 else _weighted_name(weight, stage)


def _weighted_name(weight: float, stage: Stage) -> str:
    # ``0.5*x%10`` reads back as ``(0.5*x)%10``, which ``Weighted.limited`` turns into
    # ``0.5*(x%10)``: so a positive weight on a cutoff needs no parentheses.
    bare = weight > 0 and stage.precedence == _PREC_MUL and not isinstance(stage, Weighted)
    return f"{_num(weight)}*{stage.name if bare else _wrap(stage, _PREC_MUL + 1)}"


def _num(value: float) -> str:
    """Shortest text that reads back as exactly ``value`` (``0.3``, ``2``, ``0.123456789``)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


#: The ``k`` of reciprocal-rank fusion (Cormack et al. 2009), the ``|`` operator's.
RRF_K = 60


def reciprocal_ranks(ranking: Ranking, k: int = RRF_K) -> dict[str, float]:
    """Each document's reciprocal-rank term in ``ranking``: ``1 / (k + rank)``, ranks from 1.

    The one place the fusion formula lives: :class:`RRF` weights and sums these terms, and
    :func:`rrf_scores` sums them for rankings already made.
    """
    return {h.doc_id: 1.0 / (k + i) for i, h in enumerate(ranking, start=1)}


def rrf_scores(rankings: Sequence[Ranking], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal-rank fusion of finished rankings: ``sum_i 1 / (k + rank_i)`` per document.

    The scores ``a | b`` gives, for rankings in hand (e.g. one per rewritten query); a
    document missing from a ranking gets nothing from it. Documents keep first-seen order.

    Example:
        >>> a = Ranking.from_scores(Query("q", "q"), [("d1", 2.0), ("d2", 1.0)], pipeline="a")
        >>> b = Ranking.from_scores(Query("q", "q"), [("d2", 5.0)], pipeline="b")
        >>> rrf_scores([a, b]) == {"d1": 1 / 61, "d2": 1 / 62 + 1 / 61}
        True
    """
    total: dict[str, float] = {}
    for ranking in rankings:
        for doc_id, term in reciprocal_ranks(ranking, k).items():
            total[doc_id] = total.get(doc_id, 0.0) + term
    return total


class RRF(_Fusion):
    """Reciprocal-rank fusion: ``sum_i w_i / (k + rank_i)``, ranks from 1 (Cormack et al. 2009).

    A document missing from a member's ranking contributes nothing from that member.
    """

    precedence = _PREC_OR

    def __init__(self, members: Sequence[tuple[float, Stage]], k: int = RRF_K) -> None:
        super().__init__(members)
        self.k = k

    @classmethod
    def of(cls, left: Stage, right: Stage) -> RRF:
        """Flatten ``left | right`` into one fusion."""
        terms = [m for s in (left, right)
                 for m in (s.members if isinstance(s, RRF) and s.k == RRF_K else [_weighted(s)])]
        return cls(terms)

    @property
    def name(self) -> str:
        return " | ".join(_term_name(w, s, _PREC_OR + 1) for w, s in self.members)

    def _contributions(self, rankings: list[Ranking]) -> list[tuple[dict[str, float], float]]:
        return [(reciprocal_ranks(r, self.k), 0.0) for r in rankings]
