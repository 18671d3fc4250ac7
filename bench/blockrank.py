"""BlockRank on BEIR SciFact (test) over BM25, on the CPU: quality, latency, memory, cache.

1. nDCG@10 of BM25 top-``k`` reordered by BlockRank for each scoring layer in ``--layers``
   (first ``--queries`` test queries), against BM25 alone on the same queries.
2. Latency and peak memory (RSS above the loaded model, sampled every 5 ms) of one
   cold-cache BlockRank call at each pool size in ``--sizes``, per ``--paths``.
3. The document-cache speedup: a second, different query over the same pool.

Prints JSON lines and writes ``bench/results/blockrank.json``.

Run:
    .venv/bin/python bench/blockrank.py [--queries 30] [--layers 8,12] [--sizes 10,20,50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from pursuit.indexes.bm25 import BM25Index
from pursuit.indexes.datasets.beir import read_beir
from pursuit.indexes.docstore import DocStore
from pursuit.rerankers.blockrank.reranker import BlockRankReranker
from pursuit.retrievers.bm25 import BM25Retriever
from pursuit.retrievers.evaluation.metrics import evaluate
from pursuit.retrievers.lm.causal import load_causal_lm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rss() -> int:
    """Resident set size of this process in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_during(fn):  # type: ignore[no-untyped-def]
    """``(seconds, peak RSS increase in bytes, result)`` of calling ``fn``."""
    base, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    done.set()
    t.join()
    return seconds, max(peak[0], rss()) - base, out


def emit(rows: list[dict], row: dict) -> None:  # type: ignore[type-arg]
    """Print one JSON line and keep it."""
    print(json.dumps(row), flush=True)
    rows.append(row)


def main() -> None:
    """Run the benchmark and print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--k", type=int, default=10, help="BM25 depth reranked for quality")
    ap.add_argument("--layers", default="8,12", help="scoring layers (0-based) for quality")
    ap.add_argument("--sizes", default="10,20,50", help="pool sizes for latency and memory")
    ap.add_argument("--paths", default="batched", help="attention paths for latency")
    ap.add_argument("--max-doc-tokens", type=int, default=384)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads (0: torch's default); 1 is far faster when "
                         "other processes load the cores")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows: list[dict] = []  # type: ignore[type-arg]
    ds = read_beir(args.data, "test")
    lm = load_causal_lm(args.model)
    emit(rows, {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                "threads": torch.get_num_threads(), "load_avg": os.getloadavg(),
                "runtime": runtime(lm.dtype)})
    queries = ds.queries[: args.queries]
    with tempfile.TemporaryDirectory() as tmp:
        store = DocStore.create(Path(tmp) / "docs.sqlite")
        rows_ = store.add(ds.corpus)
        index = BM25Index.build([d.contents() for d in ds.corpus], rows_)
        bm25 = BM25Retriever(index, store, k=max([args.k, *map(int, args.sizes.split(","))]),
                             fetch_docs=True)
        pools = bm25.retrieve_batch(queries, bm25.k)

        if not args.skip_quality:
            qrels = {q.id: ds.qrels[q.id] for q in queries if q.id in ds.qrels}
            base = evaluate([p.top(args.k) for p in pools], qrels, ["nDCG@10"]).aggregate
            emit(rows, {"system": f"bm25%{args.k}", "queries": len(queries), **base})
            for layer in map(int, args.layers.split(",")):
                r = BlockRankReranker(lm, store=store, layer=layer,
                                      max_doc_tokens=args.max_doc_tokens)
                start = time.perf_counter()
                ranked = [r.transform(q, p.top(args.k)) for q, p in zip(queries, pools, strict=True)]
                per_q = (time.perf_counter() - start) / len(queries)
                m = evaluate(ranked, qrels, ["nDCG@10"]).aggregate
                emit(rows, {"system": f"bm25%{args.k} >> blockrank(layer={layer})",
                            "queries": len(queries), "s_per_query": round(per_q, 3), **m})

        for path in filter(None, args.paths.split(",")):  # --paths "" skips timing
            for n in map(int, args.sizes.split(",")):
                docs = [h.doc for h in pools[0].top(n)]
                r = BlockRankReranker(lm, layer=12, path=path, max_doc_tokens=args.max_doc_tokens)
                r.score(queries[1].text, [h.doc for h in pools[1].top(2)])  # warm the kernels
                cold_s, peak, _ = peak_during(lambda r=r, docs=docs: r.score(queries[0].text, docs))
                doc_tokens = r.stats.doc_tokens
                warm_s, _, _ = peak_during(lambda r=r, docs=docs: r.score(queries[2].text, docs))
                emit(rows, {"path": path, "docs": n, "doc_tokens": doc_tokens,
                            "cold_s": round(cold_s, 3), "peak_rss_mb": round(peak / 2**20, 1),
                            "second_query_s": round(warm_s, 3),
                            "cache_speedup": round(cold_s / warm_s, 1),
                            "cache_mb": round(r.cache.bytes / 2**20, 1),
                            "load_avg": os.getloadavg()[0]})
        store.close()
    out = ROOT / "bench" / "results" / ("blockrank_speed.json" if args.skip_quality
                                        else "blockrank.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
