"""The packaged 0.5B reranker in float32 against bfloat16 on this CPU: speed and rankings.

ICR (the default reranker, middle third of the layers) reorders BM25's top ``--k`` for the
first ``--queries`` SciFact test claims (from ``--start``) with the model in float32, then
for the first ``--bf16-queries`` of them in bfloat16. Each dtype loads its own copy from
the packaged model's conversion cache (one folder per dtype) and first reranks two
synthetic documents, untimed. Reported per dtype: load seconds, seconds per query (wall and
process CPU), nDCG@10 on the claims both ran (and BM25's on the same claims); per claim:
whether the two orders are identical, where they first differ, and the largest score
difference. On a CPU without AVX512-BF16 or AMX, torch emulates bfloat16 and it is far
slower than float32, which is why ``dtype="auto"`` picks float32 there: keep
``--bf16-queries`` small on such a CPU.

The JSON (``bench/results/dtype.json`` unless ``--out``) records the CPU, its bf16-relevant
flags, torch's version and threads (``bench/runtime.py``).

Run:
    .venv/bin/python bench/dtype.py --queries 3 --bf16-queries 2 --threads 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pursuit.indexes.datasets.beir import read_beir
from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.rerankers.icr import ICRReranker
from pursuit.retrievers.evaluation.metrics import evaluate
from pursuit.retrievers.lm.causal import load_causal_lm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from pools import bm25_pools  # noqa: E402
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEASURE = "nDCG@10"
_WARM = {"w1": Doc("w1", "The tide is the rise and fall of the sea caused by the moon."),
         "w2": Doc("w2", "Vitamin D is made in the skin when it is exposed to sunlight.")}


def rerank_all(model: str, dtype: str, queries: list[Query], pools: list[Ranking],
               max_words: int) -> dict[str, Any]:
    """Load ``model`` in ``dtype``, rerank every pool with ICR; timings and rankings."""
    t0 = time.perf_counter()
    lm = load_causal_lm(model, dtype=dtype, device="cpu")
    load_s = time.perf_counter() - t0
    icr = ICRReranker(lm, max_words=max_words)
    warm_q = Query("warm", "what causes the tides?")
    icr.transform(warm_q, Ranking.from_scores(warm_q, [("w1", 2.0), ("w2", 1.0)],
                                              pipeline="warm-up", docs=_WARM))
    rankings, walls, cpus = [], [], []
    for i, (query, pool) in enumerate(zip(queries, pools, strict=True), start=1):
        w0, c0 = time.perf_counter(), time.process_time()
        rankings.append(icr.transform(query, pool))
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        print(f"  {dtype}: {i}/{len(queries)} claims, {walls[-1]:.1f} s "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    actual = str(lm.dtype).removeprefix("torch.")
    del icr, lm
    gc.collect()
    return {"dtype": actual, "load_s": round(load_s, 1), "rankings": rankings,
            "s_per_query": round(sum(walls) / len(walls), 2),
            "cpu_s_per_query": round(sum(cpus) / len(cpus), 2),
            "s_per_claim": [round(w, 2) for w in walls]}


def agreement(a: Ranking, b: Ranking) -> dict[str, Any]:
    """How two rankings of the same candidates differ: order, first difference, scores."""
    ids_a, ids_b = a.doc_ids(), b.doc_ids()
    first = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b, strict=True)) if x != y), None)
    score_b = {h.doc_id: h.score for h in b}
    return {"query": a.query.id, "same_order": ids_a == ids_b, "first_difference": first,
            "same_top1": ids_a[0] == ids_b[0],
            "max_abs_score_diff": round(max(abs(h.score - score_b[h.doc_id]) for h in a), 5),
            "float32": ids_a, "bfloat16": ids_b}


def ndcg(rankings: list[Ranking], qrels: dict[str, dict[str, int]]) -> float:
    """Mean nDCG@10 of ``rankings`` over their judged queries."""
    judged = {r.query.id: qrels[r.query.id] for r in rankings if r.query.id in qrels}
    return round(float(evaluate(rankings, judged, (MEASURE,)).aggregate[MEASURE]), 4)


def main() -> None:
    """Run the comparison; print it and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--queries", type=int, default=3, help="claims reranked in float32")
    ap.add_argument("--bf16-queries", type=int, default=2,
                    help="the first N of them reranked in bfloat16 too (0: none)")
    ap.add_argument("--start", type=int, default=0, help="first test claim (0-based)")
    ap.add_argument("--k", type=int, default=10, help="BM25 candidates per claim")
    ap.add_argument("--max-words", type=int, default=300, help="ICR's words per document")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dtype.json")
    args = ap.parse_args()
    if not 0 <= args.bf16_queries <= args.queries:
        ap.error("--bf16-queries must be between 0 and --queries")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_start = os.getloadavg()
    ds = read_beir(args.data, "test")
    queries = ds.queries[args.start:args.start + args.queries]
    pools = bm25_pools(ds.corpus, queries, args.k, source=args.data)
    qrels = {q: dict(r) for q, r in ds.qrels.items()}
    n_both = args.bf16_queries

    runs = {"float32": rerank_all(args.model, "float32", queries, pools, args.max_words)}
    if n_both:
        runs["bfloat16"] = rerank_all(args.model, "bfloat16", queries[:n_both],
                                      pools[:n_both], args.max_words)
    both = runs["float32"]["rankings"][:n_both]
    compared = ([agreement(a, b) for a, b in zip(both, runs["bfloat16"]["rankings"],
                                                 strict=True)] if n_both else [])
    report: dict[str, Any] = {
        "model": args.model, "reranker": "icr", "dataset": "beir-scifact test",
        "start": args.start, "k": args.k, "max_words": args.max_words,
        "runtime": runtime(), "load_avg": [load_start[0], os.getloadavg()[0]],
        "bm25": {"queries": len(queries), MEASURE: ndcg(pools, qrels),
                 f"{MEASURE}_on_bf16_queries": ndcg(pools[:n_both], qrels) if n_both else None},
        "dtypes": {name: {k: v for k, v in run.items() if k != "rankings"}
                   | {"queries": len(run["rankings"]), MEASURE: ndcg(run["rankings"], qrels)}
                   for name, run in runs.items()},
        "float32_on_bf16_queries": {MEASURE: ndcg(both, qrels)} if n_both else None,
        "agreement": compared,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "elapsed_s": round(time.perf_counter() - started, 1)}
    if n_both:
        f32, b16 = report["dtypes"]["float32"], report["dtypes"]["bfloat16"]
        report["bf16_over_fp32_s_per_query"] = round(b16["s_per_query"] / f32["s_per_query"], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")

    rt = report["runtime"]
    print(f"\n{rt['cpu']}, flags {rt['cpu_flags']}, torch {rt['torch']}, {rt['threads']} "
          f"threads; 'auto' picks {rt['dtype']} here")
    print(f"BM25 top {args.k}: {MEASURE} {report['bm25'][MEASURE]} on {len(queries)} claims")
    for name, row in report["dtypes"].items():
        print(f"icr {name}: {row['s_per_query']} s/query ({row['cpu_s_per_query']} CPU s), "
              f"load {row['load_s']} s, {MEASURE} {row[MEASURE]} on {row['queries']} claims")
    for row in compared:
        what = "same order" if row["same_order"] else f"differs from rank {row['first_difference']}"
        print(f"  claim {row['query']}: {what}, max score difference "
              f"{row['max_abs_score_diff']}")
    if n_both:
        print(f"bfloat16 / float32 time per query: {report['bf16_over_fp32_s_per_query']}x; "
              f"{MEASURE} on the {n_both} claims both ran: float32 "
              f"{report['float32_on_bf16_queries'][MEASURE]}, bfloat16 "
              f"{report['dtypes']['bfloat16'][MEASURE]}, BM25 "
              f"{report['bm25'][f'{MEASURE}_on_bf16_queries']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
