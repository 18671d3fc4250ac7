"""Batch runs: a pipeline over a dataset's queries, evaluated, with its provenance.

:func:`run_pipeline` runs ``stage.batch`` over the queries in batches, evaluates the
rankings with :func:`~pursuit.retrievers.evaluation.metrics.evaluate`, and with ``out`` writes a
folder of three files:

* ``run.trec`` — the rankings as a TREC run (``trec_eval`` gives the numbers of
  ``metrics.json``);
* ``metrics.json`` — the mean and per-query value of every measure;
* ``provenance.json`` — pipeline text, index paths, dataset, query count and limit,
  whether a query's own document was kept (``keep_identical_ids``), time, wall time, and
  the versions of pursuit, Python and the libraries that shape results.

On a dataset read from a BEIR folder a retrieved document whose id equals the query id is
dropped, as BEIR does (:mod:`pursuit.retrievers.evaluation.identical_ids`): where some query id is a
corpus id, the pipeline's retrievers search one deeper and drop it before any cutoff; and
``run.trec`` holds the rankings as evaluated.

The folder is written beside its destination under a hidden temporary name and renamed
into place at the end, so an interrupted run leaves no half-written output.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pursuit import __version__
from pursuit.indexes.datasets.beir import Dataset
from pursuit.indexes.datasets.trec import write_run
from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Ranking
from pursuit.retrievers.evaluation.identical_ids import (
    drop_identical_ids,
    keeps_identical_ids,
    queries_in_corpus,
    stage_to_run,
)
from pursuit.retrievers.evaluation.metrics import DEFAULT_MEASURES, EvalResult, evaluate
from pursuit.retrievers.stage import RRF, Cutoff, Retriever, ScoreFusion, Stage, Then, Weighted

# Distributions whose versions change results; the first installed name of each is kept.
_VERSIONED = {"numpy": ("numpy",), "torch": ("torch",), "bm25s": ("bm25s",),
              "faiss": ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu", "faiss"),
              "transformers": ("transformers",),
              "sentence-transformers": ("sentence-transformers",),
              "ir-measures": ("ir-measures", "ir_measures"),
              "pytrec-eval": ("pytrec-eval-terrier", "pytrec_eval")}


@dataclass(frozen=True)
class RunResult:
    """What a batch run produced.

    Attributes:
        rankings: One ranking per query run, in query order.
        metrics: Evaluation over the judged queries run, or ``None`` if none is judged.
        provenance: The content of ``provenance.json``.
        out: The folder written, or ``None``.
    """

    rankings: list[Ranking]
    metrics: EvalResult | None
    provenance: dict[str, Any]
    out: Path | None


def library_versions() -> dict[str, str | None]:
    """Versions of Python and of the libraries that shape results (``None``: not installed)."""
    versions: dict[str, str | None] = {"pursuit": __version__, "python": platform.python_version()}
    for key, names in _VERSIONED.items():
        versions[key] = None
        for name in names:
            try:
                versions[key] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def _stage_indexes(stage: Stage) -> set[str]:
    """Index paths named anywhere in a pipeline."""
    found = {stage.index_name} if isinstance(stage, Retriever) and stage.index_name else set()
    if isinstance(stage, Cutoff | Weighted):
        found |= _stage_indexes(stage.stage)
    elif isinstance(stage, Then):
        found |= _stage_indexes(stage.left) | _stage_indexes(stage.right)
    elif isinstance(stage, ScoreFusion | RRF):
        for _, member in stage.members:
            found |= _stage_indexes(member)
    return found


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` to ``out``, replacing an older run there."""
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        out.replace(old / out.name)
        tmp.replace(out)
        shutil.rmtree(old)
    else:
        tmp.replace(out)


def run_pipeline(
    stage: Stage,
    dataset: Dataset,
    *,
    out: Path | str | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
    measures: Sequence[str] = DEFAULT_MEASURES,
    split: str | None = None,
    overwrite: bool = False,
    keep_identical_ids: bool | None = None,
) -> RunResult:
    """Run a pipeline over a dataset's queries, evaluate it, and optionally save it.

    Args:
        stage: The pipeline.
        dataset: Queries and qrels (see :func:`pursuit.indexes.datasets.beir.read_beir`).
        out: Folder to write ``run.trec``, ``metrics.json`` and ``provenance.json`` into.
        limit: Run only the first ``limit`` queries; evaluation then covers those only.
        batch_size: Queries per ``stage.batch`` call.
        progress: Show a progress bar on stderr when it is a terminal.
        measures: ir-measures names to evaluate.
        split: Dataset split, recorded in the provenance (e.g. ``"test"``).
        overwrite: Replace an existing ``out`` folder instead of refusing to run.
        keep_identical_ids: Keep a retrieved document whose id equals the query id.
            ``None`` follows the dataset (``not dataset.drop_identical_ids``: dropped for
            BEIR folders, as BEIR and Anserini do, kept otherwise). When dropped, each
            retriever searches one deeper so rankings keep their depth, and the saved run
            and the metrics both leave the document out.

    Returns:
        The rankings, the evaluation and the provenance.

    Raises:
        PursuitError: A non-positive ``limit`` or ``batch_size``, ``out`` already existing
            without ``overwrite``, or a stage that returns the wrong number of rankings.

    Example:
        >>> result = run_pipeline(parse_pipeline("bm25%100", stages), read_beir("scifact"),
        ...                       out=Path("runs/bm25"), split="test")  # doctest: +SKIP
        >>> result.metrics.aggregate["nDCG@10"]  # doctest: +SKIP
    """
    if batch_size < 1:
        raise PursuitError(f"batch_size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise PursuitError(f"limit must be at least 1, got {limit}")
    out = Path(out) if out is not None else None
    if out is not None and out.exists() and not overwrite:
        raise PursuitError(f"{out} already exists; choose another --out or pass --overwrite")
    queries = dataset.queries[:limit] if limit is not None else list(dataset.queries)
    keep = keeps_identical_ids(keep_identical_ids, dataset)
    runner = stage_to_run(stage, keep=keep, queries=queries, corpus=dataset.corpus)
    in_corpus = queries_in_corpus(queries, dataset.corpus)
    started = time.perf_counter()
    rankings: list[Ranking] = []
    console = Console(stderr=True)
    # Off a terminal (logs, pipes) rich cannot redraw a bar, and even a transient one leaves
    # a blank line behind, so it is not shown at all there.
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  disable=not (progress and console.is_terminal)) as bar:
        task = bar.add_task(f"{stage.name} on {dataset.name}", total=len(queries))
        for start in range(0, len(queries), batch_size):
            chunk = queries[start:start + batch_size]
            ranked = runner.batch(chunk)
            if len(ranked) != len(chunk):
                raise PursuitError(f"stage {stage.name!r} returned {len(ranked)} rankings for "
                                   f"{len(chunk)} queries; batch() must return one per query")
            rankings.extend(ranked if keep else drop_identical_ids(ranked))
            bar.advance(task, len(chunk))
    run_ids = {q.id for q in queries}
    qrels = {q: rels for q, rels in dataset.qrels.items() if q in run_ids}
    metrics = (evaluate(rankings, qrels, measures, keep_identical_ids=keep)
               if qrels else None)
    indexes = _stage_indexes(stage) | {r.provenance.index for r in rankings
                                       if r.provenance.index is not None}
    provenance: dict[str, Any] = {
        "pipeline": stage.name,
        "indexes": sorted(indexes),
        "dataset": {"name": dataset.name, "split": split, "queries": len(queries),
                    "judged_queries": len(qrels), "total_queries": len(dataset.queries),
                    "limit": limit,
                    "queries_in_corpus": in_corpus},
        "keep_identical_ids": keep,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - started, 3),
        "platform": platform.platform(),
        "versions": library_versions(),
    }
    if out is not None:
        _save(out, rankings, metrics, provenance)
    return RunResult(rankings=rankings, metrics=metrics, provenance=provenance, out=out)


def _save(out: Path, rankings: list[Ranking], metrics: EvalResult | None,
          provenance: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; the published run folder should not be
    try:
        # A TREC tag holds no whitespace; the pipeline text without spaces reads the same.
        write_run(rankings, tmp / "run.trec", re.sub(r"\s+", "", provenance["pipeline"]))
        if metrics is not None:
            _write_json(tmp / "metrics.json", {"aggregate": metrics.aggregate,
                                               "per_query": metrics.per_query})
        _write_json(tmp / "provenance.json", provenance)
        _publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
