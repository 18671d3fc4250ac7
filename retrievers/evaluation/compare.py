"""Compare systems against a baseline with paired significance tests.

For each measure, every system's per-query values are paired with the baseline's over the
same judged queries and tested with a two-sided paired t-test (``scipy.stats.ttest_rel``).
The p-values of the non-baseline systems are then corrected for multiple comparisons,
per measure (Holm-Bonferroni by default), and a system differs significantly when its
adjusted p-value is below ``alpha``. Queries without a ranking count 0, as in
:func:`pursuit.retrievers.evaluation.metrics.evaluate`.

On a dataset read from a BEIR folder a retrieved document whose id equals the query id is
dropped before scoring, from pipelines (which search one deeper) and from given rankings
alike, as BEIR does (:mod:`pursuit.retrievers.evaluation.identical_ids`).

Two edge cases follow the data rather than scipy's NaN: a system whose per-query values
all equal the baseline's gets p = 1, and with fewer than two queries no test is run
(p is ``None``, never significant).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from rich.table import Table
from scipy.stats import ttest_rel

from pursuit.indexes.datasets.beir import Dataset
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Ranking
from pursuit.retrievers.evaluation.identical_ids import (
    drop_identical_ids,
    keeps_identical_ids,
    stage_to_run,
)
from pursuit.retrievers.evaluation.metrics import DEFAULT_MEASURES, EvalResult, evaluate
from pursuit.retrievers.stage import Stage

CORRECTIONS = ("holm", "bonferroni", "none")
MARK = "†"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    The ``i``-th smallest of ``m`` p-values becomes ``max over j <= i of (m - j + 1) p_(j)``,
    capped at 1 (Holm 1979).
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _adjust(p_values: Sequence[float], correction: str) -> list[float]:
    if correction == "holm":
        return holm(p_values)
    if correction == "bonferroni":
        return [min(1.0, p * len(p_values)) for p in p_values]
    return list(p_values)


@dataclass(frozen=True)
class MeasureResult:
    """One system on one measure, against the baseline (test fields ``None`` for it)."""

    mean: float
    p: float | None = None
    p_adj: float | None = None
    significant: bool = False
    wins: int = 0
    ties: int = 0
    losses: int = 0


@dataclass(frozen=True)
class SystemRow:
    """One system: its pipeline text and a result per measure."""

    system: str
    pipeline: str
    is_baseline: bool
    measures: dict[str, MeasureResult]


@dataclass(frozen=True)
class Comparison:
    """Systems compared with a baseline; plain data, see :meth:`to_table`, :meth:`to_dict`."""

    dataset: str
    baseline: str
    measures: tuple[str, ...]
    alpha: float
    correction: str
    queries: int
    rows: tuple[SystemRow, ...]
    keep_identical_ids: bool = True

    def caption(self) -> str:
        """What the marks mean, in one sentence (and the identical-id convention if used)."""
        corrected = "uncorrected" if self.correction == "none" else f"{self.correction}-corrected"
        others = len(self.rows) - 1
        dropped = "" if self.keep_identical_ids else (
            "; a document whose id equals the query id is not counted (BEIR)")
        return (f"{MARK} {corrected} p < {self.alpha:g} vs {self.baseline} (paired two-sided "
                f"t-test over {self.queries} queries, {others} system(s) per measure); "
                f"W/T/L: per-query wins/ties/losses on {self.measures[0]}{dropped}")

    def to_table(self, *, show_p: bool = False) -> Table:
        """A rich table: means with ``†`` where significant; ``show_p`` adds adjusted p."""
        table = Table(title=f"{self.dataset}: vs {self.baseline}", caption=self.caption())
        table.add_column("system")
        for m in self.measures:
            table.add_column(m)  # left: the means share a width, marks trail them
        table.add_column(f"W/T/L {self.measures[0]}", justify="right")
        for row in self.rows:
            cells = [f"{row.system} (baseline)" if row.is_baseline else row.system]
            for m in self.measures:
                r = row.measures[m]
                cell = f"{r.mean:.4f}{MARK if r.significant else ''}"
                if show_p and r.p_adj is not None:
                    cell += f" p={r.p_adj:.3g}"
                cells.append(cell)
            first = row.measures[self.measures[0]]
            cells.append("" if row.is_baseline else f"{first.wins}/{first.ties}/{first.losses}")
            table.add_row(*cells)
        return table

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``--json``)."""
        out = asdict(self)
        out["measures"] = list(self.measures)
        out["rows"] = [asdict(r) for r in self.rows]
        out["test"] = "paired two-sided t-test (scipy.stats.ttest_rel)"
        return out


def _paired(system: list[float], base: list[float], n: int) -> tuple[float | None, int, int, int]:
    diff = np.asarray(system) - np.asarray(base)
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    ties = len(diff) - wins - losses
    if n < 2:
        return None, wins, ties, losses
    if not diff.any():
        return 1.0, wins, ties, losses
    with warnings.catch_warnings():  # constant non-zero differences: scipy warns, gives p=0
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_rel(system, base).pvalue)
    return p, wins, ties, losses


def compare(
    systems: Mapping[str, Stage] | Mapping[str, Sequence[Ranking]],
    dataset: Dataset,
    baseline: str,
    *,
    measures: Sequence[str] = DEFAULT_MEASURES,
    alpha: float = 0.05,
    correction: str = "holm",
    keep_identical_ids: bool | None = None,
) -> Comparison:
    """Evaluate several systems on a dataset and test each against a baseline.

    Args:
        systems: Name -> a stage (run with ``stage.batch(dataset.queries)``) or its rankings.
        dataset: Queries and qrels; only queries that are both listed and judged count.
        baseline: The name in ``systems`` every other system is tested against.
        measures: ir-measures names.
        alpha: Significance level for the adjusted p-values.
        correction: ``"holm"``, ``"bonferroni"`` or ``"none"``, over the non-baseline
            systems, separately for each measure.
        keep_identical_ids: Keep a retrieved document whose id equals the query id.
            ``None`` follows the dataset (dropped for BEIR folders, as BEIR does; kept
            otherwise). When dropped, stages search one deeper so their rankings keep
            their depth; given rankings lose the document and hold one fewer.

    Raises:
        PursuitError: Unknown baseline or correction, or no judged query in the dataset.

    Example:
        >>> c = compare({"bm25": bm25, "hybrid": bm25 + dense}, scifact, "bm25")  # doctest: +SKIP
        >>> rich.print(c.to_table())  # doctest: +SKIP
    """
    if baseline not in systems:
        raise PursuitError(f"baseline {baseline!r} is not one of the systems: "
                           f"{', '.join(systems)}")
    if correction not in CORRECTIONS:
        raise PursuitError(f"unknown correction {correction!r}; choose {', '.join(CORRECTIONS)}")
    listed = {q.id for q in dataset.queries}
    qrels = {q: rels for q, rels in dataset.qrels.items() if q in listed}
    if not qrels:
        raise PursuitError(f"dataset {dataset.name!r} has no judged query among its queries")
    qids = sorted(qrels)
    keep = keeps_identical_ids(keep_identical_ids, dataset)
    results: dict[str, EvalResult] = {}
    pipelines: dict[str, str] = {}
    for name, system in systems.items():
        if isinstance(system, Stage):
            rankings = stage_to_run(system, keep=keep, queries=dataset.queries,
                                    corpus=dataset.corpus).batch(dataset.queries)
        else:
            rankings = list(system)
        pipelines[name] = system.name if isinstance(system, Stage) else (
            rankings[0].provenance.pipeline if rankings else "")
        if not keep:
            rankings = drop_identical_ids(rankings)
        results[name] = evaluate(rankings, qrels, measures, keep_identical_ids=keep)
    names = list(results[baseline].aggregate)
    others = [s for s in systems if s != baseline]
    cells: dict[str, dict[str, MeasureResult]] = {s: {} for s in systems}
    for m in names:
        base = [results[baseline].per_query[m][q] for q in qids]
        cells[baseline][m] = MeasureResult(mean=results[baseline].aggregate[m])
        tested = {s: _paired([results[s].per_query[m][q] for q in qids], base, len(qids))
                  for s in others}
        raw = {s: p for s in others if (p := tested[s][0]) is not None}
        adjusted = dict(zip(raw, _adjust(list(raw.values()), correction), strict=True))
        for s in others:
            p, wins, ties, losses = tested[s]
            p_adj = adjusted.get(s)
            cells[s][m] = MeasureResult(
                mean=results[s].aggregate[m], p=p, p_adj=p_adj,
                significant=p_adj is not None and p_adj < alpha,
                wins=wins, ties=ties, losses=losses)
    rows = tuple(SystemRow(s, pipelines[s], s == baseline, cells[s])
                 for s in [baseline, *others])
    return Comparison(dataset=dataset.name, baseline=baseline, measures=tuple(names),
                      alpha=alpha, correction=correction, queries=len(qids), rows=rows,
                      keep_identical_ids=keep)
