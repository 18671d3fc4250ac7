"""Evaluate rankings against relevance judgements, with trec_eval's numbers.

Measures are named as in ir-measures (``"nDCG@10"``, ``"R@100"``, ``"RR@10"``, ``"AP"``,
``"P@5"``, ``"RR(rel=2)@10"``) and computed by trec_eval's own C code through
pytrec_eval, so a result here equals ``trec_eval -c -m <measure> qrels run.trec`` on the
same run. Conventions, all trec_eval's:

* **Averages run over every judged query.** A query in ``qrels`` that has no ranking (or
  an empty one) scores 0 on every measure, as with trec_eval's ``-c`` flag. Rankings of
  queries absent from ``qrels`` are ignored. Restrict ``qrels`` to the queries you ran if
  you evaluated only some of them (``run_pipeline(limit=...)`` does).
* **The evaluated order is the ranking's order.** trec_eval re-sorts a run by score and
  breaks ties by doc id descending, which could reorder tied hits; so each query's
  documents are handed over with scores that strictly fall down the ranking. This is the
  order :func:`pursuit.indexes.datasets.trec.write_run` preserves in ``run.trec``, so trec_eval on
  that file gives the same numbers.
* ``RR@k`` is trec_eval's ``recip_rank`` over the top ``k`` documents (``-M k``);
  pytrec_eval has no cutoff for it, and its ir-measures adapter would silently drop one.
* With ``keep_identical_ids=False`` a retrieved document whose id equals the query id is
  removed before scoring (BEIR's convention, see :mod:`pursuit.retrievers.evaluation.identical_ids`);
  the documents below it move up one place.

Measures trec_eval lacks (e.g. ``Judged@10``) are computed by the provider ir-measures
picks for them; say so if you report them next to trec_eval numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ir_measures
from ir_measures import Measure
from ir_measures.providers.base import NOT_PROVIDED

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Ranking

#: nDCG@10, recall at 100, MRR@10 and MAP: the usual BEIR / MS MARCO set.
DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "R@100", "RR@10", "AP")


@dataclass(frozen=True)
class EvalResult:
    """Evaluation scores.

    Attributes:
        aggregate: Measure name -> mean over every judged query.
        per_query: Measure name -> query id -> value, for every judged query (0 for a
            query without a ranking).
    """

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]


def parse_measures(measures: Sequence[str | Measure]) -> dict[str, Measure]:
    """Parse measure names into ir-measures objects, keyed by the name as given.

    Raises:
        PursuitError: A name ir-measures does not know, with examples of valid names.
    """
    if isinstance(measures, str):  # a lone "AP" would otherwise iterate as "A", "P"
        measures = [measures]
    parsed: dict[str, Measure] = {}
    for name in measures:
        key = name.strip() if isinstance(name, str) else str(name)
        try:
            parsed[key] = ir_measures.parse_measure(key)
        except (ValueError, NameError) as err:
            raise PursuitError(
                f"unknown measure {key!r} ({err}); use ir-measures names such as "
                "nDCG@10, R@100, RR@10, AP, P@5"
            ) from err
    return parsed


def run_dict(rankings: Sequence[Ranking]) -> dict[str, dict[str, float]]:
    """Rankings as a ``{query_id: {doc_id: score}}`` run that keeps each ranking's order.

    Scores are ``n, n-1, ..., 1`` down a ranking of ``n`` documents, so a tool that
    re-sorts by score (trec_eval) sees exactly the ranking's order, ties included. A
    document listed twice keeps its first position.

    Raises:
        PursuitError: Two rankings for the same query id.
    """
    run: dict[str, dict[str, float]] = {}
    for ranking in rankings:
        qid = ranking.query.id
        if qid in run:
            raise PursuitError(
                f"two rankings for query id {qid!r}; give each query a unique id"
            )
        ordered = list(dict.fromkeys(ranking.doc_ids()))
        run[qid] = {d: float(len(ordered) - i) for i, d in enumerate(ordered)}
    return run


def _top(run: dict[str, dict[str, float]], k: int) -> dict[str, dict[str, float]]:
    # Scores are distinct and fall down each ranking, so sorting by score is its order.
    return {qid: dict(sorted(docs.items(), key=lambda p: -p[1])[:k]) for qid, docs in run.items()}


def _calc(
    measure: Measure, qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]
) -> dict[str, float]:
    if measure.NAME == "RR" and measure["cutoff"] is not NOT_PROVIDED:
        uncut = ir_measures.RR(**{k: v for k, v in measure.params.items() if k != "cutoff"})
        return _calc(uncut, qrels, _top(run, int(measure["cutoff"])))
    if ir_measures.pytrec_eval.supports(measure):
        evaluator = ir_measures.pytrec_eval.evaluator([measure], qrels)
    else:
        evaluator = ir_measures.evaluator([measure], qrels)
    return {m.query_id: float(m.value) for m in evaluator.iter_calc(run)}


def evaluate(
    rankings: Sequence[Ranking],
    qrels: Mapping[str, Mapping[str, int]],
    measures: Sequence[str | Measure] = DEFAULT_MEASURES,
    *,
    keep_identical_ids: bool = True,
) -> EvalResult:
    """Score rankings against relevance judgements.

    Args:
        rankings: One ranking per query (query ids must be unique).
        qrels: Query id -> document id -> relevance grade (0 = judged not relevant).
        measures: ir-measures names, e.g. ``("nDCG@10", "R@100", "RR@10", "AP")``.
        keep_identical_ids: ``False`` drops a retrieved document whose id equals its
            query's id before scoring, as BEIR's evaluation does; a ranking cut at ``k``
            then scores ``k - 1`` documents for such a query, so let the pipeline drop it
            first (:func:`pursuit.retrievers.evaluation.identical_ids.excluding_identical_ids`) where it
            can.

    Returns:
        Means over every query in ``qrels`` (missing rankings count 0) and per-query values.

    Raises:
        PursuitError: Empty ``qrels``, an unknown measure name, or duplicate query ids.

    Example:
        >>> from pursuit.indexes.records import Query, Ranking
        >>> r = Ranking.from_scores(Query("q1", "tides"), [("d1", 2.0), ("d2", 1.0)],
        ...                         pipeline="bm25")
        >>> evaluate([r], {"q1": {"d2": 1}}, ["RR@10"]).aggregate
        {'RR@10': 0.5}
    """
    parsed = parse_measures(measures)
    judged = {
        str(qid): {str(d): int(rel) for d, rel in docs.items()} for qid, docs in qrels.items()
    }
    if not judged:
        raise PursuitError("qrels are empty: there is nothing to evaluate against")
    run = run_dict(rankings)
    if not keep_identical_ids:
        for qid, docs in run.items():
            docs.pop(qid, None)  # scores still fall down the ranking, so order is kept
    run = {qid: docs for qid, docs in run.items() if qid in judged and docs}
    per_query: dict[str, dict[str, float]] = {}
    aggregate: dict[str, float] = {}
    for name, measure in parsed.items():
        values = _calc(measure, judged, run) if run else {}
        # trec_eval -c: a judged query without results scores 0.
        full = {qid: values.get(qid, 0.0) for qid in judged}
        per_query[name] = full
        aggregate[name] = sum(full.values()) / len(full)
    return EvalResult(aggregate=aggregate, per_query=per_query)
