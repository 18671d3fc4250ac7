"""One reranking table from several ``bench/rerank.py`` runs, Holm-corrected across all rows.

The 300-query SciFact rows take 25-75 minutes each on a 2-core CPU, so they are measured in
separate runs. Each run tests its systems against the same BM25 first stage with a paired
t-test and records the raw p-values; Holm's correction needs nothing else, so this script
gathers the rows of every run given, checks that they share the dataset, the queries, the
depth and BM25's numbers, and applies Holm over all rerankers of a model per measure —
what a single run of every system would have printed.

A system measured again in a later run (new defaults) is left out of the earlier one with
``--drop SYSTEM=RUN``; the merged file lists what was dropped.

Run:
    .venv/bin/python bench/rerank_table.py bench/results/rerank-icr-300.json \\
        bench/results/rerank-br-ql-300.json [--drop blockrank=bench/results/rerank-br-ql-300.json] \\
        [--out bench/results/rerank-300.json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pursuit.retrievers.evaluation.compare import holm

MEASURES = ("nDCG@10", "RR@10")


def merge(reports: list[dict[str, Any]],
          drop: Collection[tuple[int, str]] = ()) -> dict[str, Any]:
    """The rows of ``reports`` with Holm-adjusted p-values per (model, measure).

    Args:
        reports: ``bench/rerank.py`` results.
        drop: ``(report index, system)`` rows to leave out (superseded by another run).

    Raises:
        ValueError: The runs differ in dataset, queries, depth or BM25's numbers, two
            runs measured the same system with the same model, or a row to drop is not
            in its run.
    """
    first = reports[0]
    key = ("dataset", "queries", "start", "k")
    for other in reports[1:]:
        for field in key:
            # Reports written before slices have no "start": they began at the first claim.
            a, b = first.get(field, 0), other.get(field, 0)
            if a != b:
                raise ValueError(f"runs differ in {field}: {a!r} vs {b!r}")
        for m in MEASURES:
            a, b = first["first_stage"][m], other["first_stage"][m]
            if abs(a - b) > 1e-9:
                raise ValueError(f"runs have different BM25 {m}: {a} vs {b}")
    for i, system in drop:
        if not any(row["system"] == system for row in reports[i]["systems"]):
            raise ValueError(f"run {i + 1} has no {system} row to drop")
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for i, report in enumerate(reports):
        tests = {r["system"]: r["measures"] for r in report["comparison"]["rows"]}
        for row in report["systems"]:
            if (i, row["system"]) in drop:
                continue
            ident = (row["system"], row["model"])
            if ident in seen:
                raise ValueError(f"{row['system']} with {row['model']} appears in two runs; "
                                 "leave the superseded one out with --drop SYSTEM=RUN")
            seen.add(ident)
            rows.append({**row, "tests": tests[row["label"]]})
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        for m in MEASURES:
            for r, p in zip(mine, holm([r["tests"][m]["p"] for r in mine]), strict=True):
                r["tests"][m]["p_holm_all"] = p
    return {"dataset": first["dataset"], "queries": first["queries"], "k": first["k"],
            "first_stage": first["first_stage"], "rows": rows,
            "dropped": [{"run": i + 1, "system": system} for i, system in sorted(drop)]}


def main() -> None:
    """Print the merged table; write it with ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--drop", action="append", default=[], metavar="SYSTEM=RUN",
                    help="leave SYSTEM's rows of run file RUN out (measured again elsewhere)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    drop: set[tuple[int, str]] = set()
    for spec in args.drop:
        system, _, run = spec.partition("=")
        matches = [i for i, p in enumerate(args.runs) if p.resolve() == Path(run).resolve()]
        if not system or not matches:
            ap.error(f"--drop {spec!r}: expected SYSTEM=RUN with RUN one of the runs given")
        drop.add((matches[0], system))
    table = merge([json.loads(p.read_text()) for p in args.runs], drop)
    bm25 = table["first_stage"]
    print(f"{table['dataset']}, {table['queries']} queries, BM25 top {table['k']}")
    print("| system | model | nDCG@10 | p (Holm, all rows) | RR@10 | p (Holm) | W/T/L nDCG@10 "
          "| s/query (wall) | CPU s/query |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| BM25 | — | {bm25['nDCG@10']:.4f} | — | {bm25['RR@10']:.4f} | — | — "
          f"| {bm25['ms_per_query'] / 1000:.4f} | — |")
    for r in table["rows"]:
        n, rr = r["tests"]["nDCG@10"], r["tests"]["RR@10"]
        print(f"| {r['system']} | {r['model']} | {r['nDCG@10']:.4f} | {n['p_holm_all']:.2g} "
              f"| {r['RR@10']:.4f} | {rr['p_holm_all']:.2g} | {n['wins']}/{n['ties']}/"
              f"{n['losses']} | {r['s_per_query']:.2f} | {r['cpu_s_per_query']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(table, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
