"""BM25 on BEIR SciFact (test): effectiveness and speed against rank-bm25.

Measures nDCG@10 and R@100 of :class:`BM25Retriever` (target: Anserini's flat BM25,
nDCG@10 0.6789), then queries per second at several depths of ``retrieve_batch`` (which
returns ``Ranking`` records) and of ``BM25Index.search`` (arrays only), against rank-bm25's
``BM25Okapi.get_scores`` + argsort over the same queries, tokenised the same way, in the
same run. rank-bm25 scores every document whatever the depth, so it is timed once.
Prints a table and writes ``bench/results/bm25.json``.

Run:
    .venv/bin/python bench/bm25.py [--data ../shared/data/beir-scifact] [--depths 10,100,1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from pursuit.indexes.bm25 import BM25Index
from pursuit.indexes.datasets.beir import read_beir
from pursuit.indexes.docstore import DocStore
from pursuit.retrievers.bm25 import BM25Retriever
from pursuit.retrievers.evaluation.metrics import evaluate

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Fastest wall time of ``repeats`` calls: the least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    """Run the benchmark and print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--k", type=int, default=1000, help="retrieval depth for the metrics")
    ap.add_argument("--depths", default="10,100,1000", help="depths to time, comma-separated")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of ours (best counts)")
    args = ap.parse_args()

    ds = read_beir(args.data, "test")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store = DocStore.create(Path(tmp) / "docs.sqlite")
        rows = store.add(ds.corpus)
        texts = [d.contents() for d in ds.corpus]
        index = BM25Index.build(texts, rows)
        index.save(Path(tmp) / "bm25")
        build_s = time.perf_counter() - t
        index = BM25Index.load(Path(tmp) / "bm25", mmap=True)
        bm25 = BM25Retriever(index, store, k=args.k)

        rankings = bm25.retrieve_batch(ds.queries, args.k)
        metrics = evaluate(rankings, ds.qrels, ["nDCG@10", "R@100", "R@1000"]).aggregate
        texts_q = [q.text for q in ds.queries]
        depths = [int(d) for d in args.depths.split(",")]
        ours_s = {k: best_of(lambda k=k: bm25.retrieve_batch(ds.queries, k), args.repeats)
                  for k in depths}
        arrays_s = {k: best_of(lambda k=k: index.search(texts_q, k), args.repeats) for k in depths}
        store.close()

    # rank-bm25 with the very same tokens: our analyzer's output for corpus and queries.
    corpus_tokens = [index.analyzer(t) for t in texts]
    query_tokens = [index.analyzer(q.text) for q in ds.queries]
    ref = BM25Okapi(corpus_tokens, k1=0.9, b=0.4)
    t = time.perf_counter()
    for q in query_tokens:
        np.argsort(-ref.get_scores(q))[:max(depths)]
    ref_s = time.perf_counter() - t

    nq = len(ds.queries)
    speed = [{"k": k, "retrieve_batch_qps": round(nq / ours_s[k], 1),
              "index_search_qps": round(nq / arrays_s[k], 1),
              "speedup_retrieve_batch": round(ref_s / ours_s[k], 1),
              "speedup_index_search": round(ref_s / arrays_s[k], 1)} for k in depths]
    result = {
        "dataset": f"{ds.name} test", "n_docs": len(ds.corpus), "n_queries": nq, "k": args.k,
        "config": index.config, "build_s": round(build_s, 3),
        "nDCG@10": round(metrics["nDCG@10"], 4), "R@100": round(metrics["R@100"], 4),
        "R@1000": round(metrics["R@1000"], 4), "rank_bm25_qps": round(nq / ref_s, 2),
        "speed": speed, "cpus": os.cpu_count(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
    }
    print(f"BM25 on {result['dataset']} ({len(ds.corpus)} docs, {nq} queries, k={args.k})")
    print(f"  nDCG@10 {result['nDCG@10']:.4f}   R@100 {result['R@100']:.4f}   "
          f"R@1000 {result['R@1000']:.4f}   (Anserini flat: 0.6789 / 0.9253 / 0.9767)")
    print(f"  build (store + index + save) {build_s:.2f} s")
    print(f"  rank-bm25 get_scores+argsort: {result['rank_bm25_qps']:.1f} queries/s")
    print("      k   retrieve_batch q/s  (x rank-bm25)   index.search q/s  (x rank-bm25)")
    for row in speed:
        print(f"  {row['k']:>5}   {row['retrieve_batch_qps']:>16.1f}  ({row['speedup_retrieve_batch']:>6.1f} x)"
              f"   {row['index_search_qps']:>14.1f}  ({row['speedup_index_search']:>6.1f} x)")
    out = ROOT / "bench" / "results" / "bm25.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  wrote {out}")


if __name__ == "__main__":
    main()
