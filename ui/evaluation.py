"""``pursuit eval`` and ``pursuit compare``: pipelines over a dataset's index."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from pursuit.indexes.beir import Dataset
from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.batch import run_pipeline
from pursuit.retrievers.compare import Comparison, compare
from pursuit.ui.datasets import dataset_index, load_dataset
from pursuit.ui.settings import Settings
from pursuit.ui.stages import pipeline_over, pipelines_over


def _open(dataset_path: Path, split: str, limit: int | None, index_dir: Path | None,
          settings: Settings, console: Console | None) -> tuple[Dataset, SearchIndex]:
    dataset = load_dataset(dataset_path, split=split)
    if limit is not None:
        if limit < 1:
            raise PursuitError(f"--limit must be a positive number of queries, got {limit}")
        queries = dataset.queries[:limit]
        kept = {q.id for q in queries}
        dataset = Dataset(dataset.name, dataset.corpus, queries,
                          {q: r for q, r in dataset.qrels.items() if q in kept})
    if index_dir is not None:
        return dataset, SearchIndex.open(index_dir)
    return dataset, dataset_index(dataset, settings, source=str(dataset_path), console=console)


def evaluate_pipeline(dataset_path: Path, pipeline: str, *, settings: Settings,
                      out: Path | None = None, limit: int | None = None, split: str = "test",
                      index_dir: Path | None = None,
                      console: Console | None = None) -> dict[str, Any]:
    """Run ``pipeline`` over the dataset's queries; write run, metrics and provenance to ``out``.

    Returns:
        ``{"queries": n, "metrics": {measure: value}}``.
    """
    dataset, index = _open(dataset_path, split, limit, index_dir, settings, console)
    with index:
        stage = pipeline_over(index, pipeline)
        result = run_pipeline(stage, dataset, out=out, progress=console is not None)
    return {"queries": len(dataset.queries), "metrics": dict(result.metrics.aggregate)}


def compare_pipelines(dataset_path: Path, systems: Mapping[str, str], *, baseline: str,
                      settings: Settings, limit: int | None = None, split: str = "test",
                      index_dir: Path | None = None,
                      console: Console | None = None) -> Comparison:
    """Compare named pipelines against ``baseline`` with paired, Holm-corrected t-tests."""
    if baseline not in systems:
        raise PursuitError(f"--baseline {baseline!r} is not one of the pipelines: "
                           f"{', '.join(systems)}")
    dataset, index = _open(dataset_path, split, limit, index_dir, settings, console)
    with index:
        stages = pipelines_over(index, systems)
        return compare(stages, dataset, baseline)
