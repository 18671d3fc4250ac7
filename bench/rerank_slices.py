"""Join consecutive slices of ``bench/rerank.py`` into one report, as if measured in one run.

The 1.5B takes about two minutes a SciFact claim for the four rerankers on two cores, so
its 300-claim rows are measured a slice at a time (``bench/rerank.py --start 0 --queries
30``, then ``--start 30``, ...), possibly over several sessions. This script checks that the
slices are consecutive (no gap, no overlap) over the same data and depth, reads every
slice's TREC runs back (the rankings exactly: ``write_run`` keeps their order), and
recomputes what ``bench/rerank.py`` reports over the union: nDCG@10 and RR@10, paired
t-tests against BM25 with Holm's correction, latency per query (the slices' wall and CPU
seconds summed), BlockRank's document-cache counts and listwise's window counts (summed),
and the listwise/ICR latency check. A system missing from some slice is left out and
listed under ``incomplete``.

The joined report has ``bench/rerank.py``'s fields, so ``bench/rerank_table.py`` can take it.

Run:
    .venv/bin/python bench/rerank_slices.py bench/results/rerank-1.5b-q0.json \\
        bench/results/rerank-1.5b-q30.json [...] --out bench/results/rerank-1.5b.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pursuit.indexes.datasets.beir import Dataset, read_beir
from pursuit.indexes.datasets.trec import read_run_rankings, write_run
from pursuit.indexes.records import Query, Ranking
from pursuit.retrievers.evaluation.compare import compare
from pursuit.retrievers.evaluation.metrics import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from rerank import MEASURES, runs_dir, save, speed_check  # noqa: E402
from slices import consecutive  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _read(report_path: Path, recorded: str, queries: dict[str, Query]) -> list[Ranking]:
    # The run sits beside its report, whatever the working directory was when it was written.
    run = runs_dir(report_path) / Path(recorded).name
    if not run.is_file():
        raise ValueError(f"{report_path}: its run {run} is missing")
    return read_run_rankings(run, queries=queries)


def join(slices: list[tuple[Path, dict[str, Any]]], dataset: Dataset, out: Path) -> dict[str, Any]:
    """One report over the union of ``slices``, its joined runs written beside ``out``.

    Args:
        slices: ``(report path, report)`` of ``bench/rerank.py`` runs, in any order.
        dataset: The split the slices ranked (queries in file order, qrels).
        out: The joined report's path; its runs go to ``<out stem>-runs/``.

    Raises:
        ValueError: Slices over different data or depth, not consecutive, whose BM25 run
            holds other queries than its position in ``dataset`` says, or a missing run.
    """
    slices, end = consecutive(slices, same=("dataset", "k"), length=lambda r: r["queries"],
                              unit="query")
    if end > len(dataset.queries):
        raise ValueError(f"the slices end at query {end}, past the dataset's "
                         f"{len(dataset.queries)}")
    start = slices[0][1].get("start", 0)
    count = end - start
    queries = dataset.queries[start:end]
    qrels = {q.id: dataset.qrels[q.id] for q in queries if q.id in dataset.qrels}
    by_id = {q.id: q for q in queries}

    bm25: list[Ranking] = []
    offset = start
    for path, rep in slices:
        part = _read(path, rep["first_stage"]["run"], by_id)
        expected = [q.id for q in dataset.queries[offset:offset + rep["queries"]]]
        if [r.query.id for r in part] != expected:
            raise ValueError(f"{path}: its BM25 run does not hold test queries {offset} to "
                             f"{offset + rep['queries'] - 1} of {dataset.name}")
        bm25 += part
        offset += rep["queries"]

    labels = [row["label"] for row in slices[0][1]["systems"]]
    complete = [lab for lab in labels
                if all(any(r["label"] == lab for r in rep["systems"]) for _, rep in slices)]
    incomplete = sorted({r["label"] for _, rep in slices for r in rep["systems"]}
                        - set(complete))
    joined_runs = runs_dir(out)
    joined_runs.mkdir(parents=True, exist_ok=True)
    rankings: dict[str, list[Ranking]] = {"bm25": bm25}
    rows: list[dict[str, Any]] = []
    for label in complete:
        parts = [(path, rep, next(r for r in rep["systems"] if r["label"] == label))
                 for path, rep in slices]
        ranked = [rk for path, _, row in parts for rk in _read(path, row["run"], by_id)]
        head = parts[0][2]
        wall = sum(row["wall_s"] for _, _, row in parts)
        cpu = sum(row["cpu_s_per_query"] * rep["queries"] for _, rep, row in parts)
        joined = {"system": head["system"], "model": head["model"], "label": label,
                  "pipeline": head["pipeline"], "s_per_query": round(wall / count, 3),
                  "cpu_s_per_query": round(cpu / count, 3), "wall_s": round(wall, 1),
                  "load_avg": [row["load_avg"] for _, _, row in parts],
                  **evaluate(ranked, qrels, MEASURES).aggregate}
        for counts in ("doc_cache", "windows"):
            if counts in head:
                joined[counts] = {key: sum(row[counts][key] for _, _, row in parts)
                                  for key in head[counts]}
        joined["run"] = str(write_run(ranked, joined_runs / f"{head['system']}-{head['model']}"
                                      ".trec", tag=f"{head['system']}-{head['model']}"))
        rankings[label] = ranked
        rows.append(joined)

    base = evaluate(bm25, qrels, MEASURES).aggregate
    ms = sum(rep["first_stage"]["ms_per_query"] * rep["queries"] for _, rep in slices) / count
    first = slices[0][1]
    report: dict[str, Any] = {
        "dataset": first["dataset"], "queries": count, "start": start, "k": first["k"],
        "slices": [{"report": str(path), "start": rep.get("start", 0),
                    "queries": rep["queries"], "machine": rep.get("machine"),
                    "models": rep.get("models")} for path, rep in slices],
        "first_stage": {"pipeline": first["first_stage"]["pipeline"],
                        "ms_per_query": round(ms, 3), **base,
                        "run": str(write_run(bm25, joined_runs / "bm25.trec", tag="bm25"))},
        "systems": rows, "incomplete": incomplete,
        "speed_check": [c for m in dict.fromkeys(r["model"] for r in rows)
                        if (c := speed_check(rows, m)) is not None],
        "complete": not incomplete and all(rep.get("complete", True) for _, rep in slices)}
    sub = Dataset(dataset.name, [], queries, qrels)
    report["comparison"] = compare(rankings, sub, "bm25", measures=MEASURES).to_dict()
    return report


def main() -> None:
    """Join the slices named on the command line; print the table and save the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("slices", nargs="+", help="bench/rerank.py reports (JSON)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    slices = [(Path(p), json.loads(Path(p).read_text())) for p in args.slices]
    dataset = read_beir(args.data, "test")
    out = Path(args.out)
    try:
        report = join(slices, dataset, out)
    except ValueError as err:
        ap.error(str(err))
    save(out, report)
    for row in report["systems"]:
        print(f"{row['label']}: " + ", ".join(f"{m} {row[m]:.4f}" for m in MEASURES) +
              f", {row['s_per_query']:.2f} s/query (cpu {row['cpu_s_per_query']:.2f})")
    print("bm25: " + ", ".join(f"{m} {report['first_stage'][m]:.4f}" for m in MEASURES))
    for check in report["speed_check"]:
        print(f"{check['model']}: listwise/ICR {check['listwise_over_icr_wall']:.2f} wall, "
              f"{check['listwise_over_icr_cpu']:.2f} cpu")
    if report["incomplete"]:
        print(f"left out (missing from some slice): {', '.join(report['incomplete'])}")
    print(f"{report['queries']} queries from {report['start']}; wrote {out}")


if __name__ == "__main__":
    main()
