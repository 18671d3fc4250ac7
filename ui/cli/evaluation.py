"""``pursuit eval`` and ``pursuit compare``: pipelines over a dataset's index, and saved runs."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.beir import Dataset
from pursuit.indexes.datasets.trec import read_run_rankings
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Ranking
from pursuit.rerankers.pipelines import pipeline as pipeline_stage
from pursuit.rerankers.pipelines import pipelines as pipeline_stages
from pursuit.retrievers.evaluation.batch import run_pipeline
from pursuit.retrievers.evaluation.compare import Comparison, compare
from pursuit.retrievers.registry import needs_vectors
from pursuit.ui.cli.datasets import dataset_index, load_dataset
from pursuit.ui.settings import Settings


def _subset(dataset: Dataset, limit: int | None) -> Dataset:
    """The dataset's first ``limit`` queries and their judgements (all with ``None``)."""
    if limit is None:
        return dataset
    if limit < 1:
        raise PursuitError(f"--limit must be a positive number of queries, got {limit}")
    queries = dataset.queries[:limit]
    kept = {q.id for q in queries}
    return replace(dataset, queries=queries,
                   qrels={q: r for q, r in dataset.qrels.items() if q in kept})


def _open(dataset_path: Path, split: str, limit: int | None, index_dir: Path | None,
          settings: Settings, console: Console | None,
          pipelines: Collection[str]) -> tuple[Dataset, SearchIndex]:
    dataset = _subset(load_dataset(dataset_path, split=split), limit)
    vectors = needs_vectors(*pipelines)  # a BM25-only run neither builds nor loads them
    if index_dir is not None:
        return dataset, SearchIndex.open(index_dir, vectors=vectors)
    return dataset, dataset_index(dataset, settings, source=str(dataset_path), vectors=vectors,
                                  console=console)


def evaluate_pipeline(dataset_path: Path, pipeline: str, *, settings: Settings,
                      out: Path | None = None, limit: int | None = None, split: str = "test",
                      index_dir: Path | None = None, keep_identical_ids: bool | None = None,
                      console: Console | None = None) -> dict[str, Any]:
    """Run ``pipeline`` over the dataset's queries; write run, metrics and provenance to ``out``.

    ``keep_identical_ids`` as in :func:`~pursuit.retrievers.evaluation.batch.run_pipeline` (``None``:
    a query's own document is dropped, as BEIR does).

    Returns:
        ``{"queries": n, "metrics": {measure: value}, "keep_identical_ids": bool,
        "queries_in_corpus": n}``.
    """
    dataset, index = _open(dataset_path, split, limit, index_dir, settings, console, [pipeline])
    with index:
        stage = pipeline_stage(index, pipeline, dtype=settings.dtype)
        result = run_pipeline(stage, dataset, out=out, progress=console is not None,
                              keep_identical_ids=keep_identical_ids)
    return {"queries": len(dataset.queries), "metrics": dict(result.metrics.aggregate),
            "keep_identical_ids": result.provenance["keep_identical_ids"],
            "queries_in_corpus": result.provenance["dataset"]["queries_in_corpus"]}


def compare_pipelines(dataset_path: Path, systems: Mapping[str, str], *, baseline: str,
                      settings: Settings, runs: Mapping[str, Path] | None = None,
                      limit: int | None = None, split: str = "test",
                      index_dir: Path | None = None, keep_identical_ids: bool | None = None,
                      console: Console | None = None) -> Comparison:
    """Compare named pipelines and saved TREC runs against ``baseline`` with paired,
    Holm-corrected t-tests.

    Pipelines run over the dataset's index (built when needed); runs are read from their
    files, so rankings computed earlier (or elsewhere) are tested with the same queries and
    judgements. With runs only, no index is opened. ``keep_identical_ids`` as in
    :func:`~pursuit.retrievers.evaluation.compare.compare`. A judged query a run has no ranking for
    scores 0 (as ``trec_eval -c``), and ``console`` is told how many there are.

    Raises:
        PursuitError: A name used twice, an unknown baseline, a run file that cannot be read
            or that shares no query with the dataset.
    """
    runs = dict(runs or {})
    names = [*systems, *runs]
    if len(names) < 2:
        raise PursuitError("compare needs at least two systems (--pipeline NAME=PIPELINE or "
                           "--run NAME=FILE)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PursuitError(f"system name {twice[0]!r} is given twice; names must be unique")
    if baseline not in names:
        raise PursuitError(f"--baseline {baseline!r} is not one of the systems: "
                           f"{', '.join(names)}")
    if not systems:
        dataset = _subset(load_dataset(dataset_path, split=split), limit)
        return compare(_read_runs(runs, dataset, console), dataset, baseline,
                       keep_identical_ids=keep_identical_ids)
    dataset, index = _open(dataset_path, split, limit, index_dir, settings, console,
                           systems.values())
    with index:
        ranked: dict[str, Any] = dict(pipeline_stages(index, systems, dtype=settings.dtype))
        ranked.update(_read_runs(runs, dataset, console))
        return compare({n: ranked[n] for n in names}, dataset, baseline,
                       keep_identical_ids=keep_identical_ids)


def _read_runs(runs: Mapping[str, Path], dataset: Dataset,
               console: Console | None) -> dict[str, list[Ranking]]:
    """Each run file's rankings of the dataset's queries."""
    queries = {q.id: q for q in dataset.queries}
    judged = [q for q in queries if q in dataset.qrels]
    out: dict[str, list[Ranking]] = {}
    for name, path in runs.items():
        rankings = [r for r in read_run_rankings(path, queries=queries, pipeline=path.name)
                    if r.query.id in queries]
        have = {r.query.id for r in rankings}
        if not have:
            raise PursuitError(f"run {name!r} ({path}) ranks none of the {len(queries)} queries "
                               f"of {dataset.name}: is it a run of another dataset or split?")
        missing = [q for q in judged if q not in have]
        if missing and console is not None:
            console.print(f"[yellow]run {name!r} has no ranking for {len(missing)} of "
                          f"{len(judged)} judged queries (first: {missing[0]}); they score 0")
        out[name] = rankings
    return out
