"""ICR vs BlockRank on the CPU as the pool grows: latency, peak memory, document-cache reuse.

The pool is BM25's top ``n`` SciFact abstracts (test split) for one claim, each document cut
to ``--max-doc-tokens`` tokens (160 by default, so the cost grows with the number of
documents rather than with their lengths). For every ``n`` in ``--sizes`` and each method:

* ``cold_s``: one scoring call on an empty cache. ICR puts every document into one causal
  prompt (attention cost quadratic in ``n``); BlockRank encodes each document as its own
  block (linear in ``n``).
* ``second_query_s``: a second, different claim over the same pool in the same process.
  BlockRank serves every document block from its document-KV cache and runs only the query
  block; ICR has no cross-query cache and pays the full prompt again.
* ``peak_rss_mb``: the rise of the resident set size during the cold call above the RSS
  just before it (model loaded, kernels warmed up). Measured exactly, not sampled: the
  kernel's high-water mark (``VmHWM``) is reset through ``/proc/self/clear_refs`` right
  before the call and read right after (where that file cannot be written, RSS is sampled
  every 2 ms instead and the JSON says so).

Each (method, n) case runs in a fresh subprocess, because memory freed by an earlier,
larger case stays in the process (allocator caches) and would hide the next case's peak,
and so the second-query speedup never benefits from an earlier case's cache. The loaded
model's own memory is in ``rss_before_mb``.

Prints one JSON line per case and rewrites ``bench/results/rerank_scaling.json`` after each.

Run:
    .venv/bin/python bench/rerank_scaling.py [--sizes 10,20,50,100] [--budget-s 0]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from pursuit.indexes.datasets.beir import read_beir
from pursuit.indexes.records import Doc, Query
from pursuit.retrievers.lm.dtypes import dtype_name

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from pools import bm25_pools  # noqa: E402
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("icr", "blockrank")


def _status_kb(field: str) -> int:
    """A ``VmRSS`` / ``VmHWM`` field of /proc/self/status, in kB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rise(fn: Any) -> tuple[float, int, str]:
    """``(seconds, peak RSS rise in bytes, method)`` of calling ``fn()``."""
    gc.collect()
    base = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        peak, done = [base], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _status_kb("VmRSS"))
                time.sleep(0.002)

        thread = threading.Thread(target=sample)
        thread.start()
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        done.set()
        thread.join()
        return seconds, 1024 * (max(peak[0], _status_kb("VmRSS")) - base), "sampled 2 ms"
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return seconds, 1024 * (_status_kb("VmHWM") - base), "VmHWM reset via clear_refs"


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one (method, n) case in this process; ``spec`` comes from the parent."""
    from pursuit.rerankers.base import cached_lm
    from pursuit.rerankers.blockrank.reranker import BlockRankReranker
    from pursuit.rerankers.icr import ICRReranker

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    lm = cached_lm(spec["model"])
    docs = [Doc(d["id"], d["text"], title=d["title"]) for d in spec["docs"]]
    first, second = Query("a", spec["query_a"]), Query("b", spec["query_b"])
    tokens = spec["max_doc_tokens"]
    reranker: Any
    if spec["method"] == "icr":
        reranker = ICRReranker(lm, max_words=None, max_tokens=tokens)
        doc_tokens = sum(e - s for s, e in reranker.prompt(first.text, docs[::-1]).doc_spans)
    else:
        reranker = BlockRankReranker(lm, max_doc_tokens=tokens)
    warm = [Doc("w1", "The moon pulls the sea into tides."), Doc("w2", "Sunlight makes vitamin D.")]
    reranker.score_docs(Query("w", "what causes tides?"), warm)  # kernels, not SciFact's docs
    rss_before = _status_kb("VmRSS") * 1024
    cpu0 = time.process_time()
    cold_s, peak, how = peak_rise(lambda: reranker.score_docs(first, docs))
    cold_cpu_s = time.process_time() - cpu0  # load-independent, unlike the wall time
    if spec["method"] == "blockrank":
        doc_tokens = reranker.stats.doc_tokens
    start = time.perf_counter()
    reranker.score_docs(second, docs)
    second_s = time.perf_counter() - start
    row = {"method": spec["method"], "docs": len(docs), "doc_tokens": doc_tokens,
           "cold_s": round(cold_s, 3), "cold_cpu_s": round(cold_cpu_s, 2),
           "second_query_s": round(second_s, 3),
           "second_query_speedup": round(cold_s / second_s, 1),
           "peak_rss_mb": round(peak / 2**20, 1), "rss_before_mb": round(rss_before / 2**20, 1),
           "peak_method": how, "threads": torch.get_num_threads(),
           "dtype": dtype_name(lm.dtype)}
    if spec["method"] == "blockrank":
        row["cache_hits_second_query"] = reranker.stats.cache_hits
        row["cache_mb"] = round(reranker.cache.bytes / 2**20, 1)
    return row


def pools(data: str, n: int, query_a: int, query_b: int) -> tuple[Query, Query, list[Doc]]:
    """Claims ``query_a`` and ``query_b`` of SciFact test and BM25's top ``n`` for the first."""
    ds = read_beir(data, "test")
    ranking = bm25_pools(ds.corpus, [ds.queries[query_a]], n, source=data)[0]
    docs = [h.doc for h in ranking if h.doc is not None]
    return ds.queries[query_a], ds.queries[query_b], docs


def main() -> None:
    """Run every case in its own subprocess; print and save the numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--sizes", default="10,20,50,100", help="pool sizes (documents)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--max-doc-tokens", type=int, default=160)
    ap.add_argument("--query", type=int, default=0, help="test claim whose BM25 pool is used")
    ap.add_argument("--second-query", type=int, default=1, help="claim of the cache test")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--budget-s", type=float, default=0,
                    help="start no new case after this many seconds (0: no budget)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "rerank_scaling.json"))
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: spec JSON of one case
    args = ap.parse_args()
    if args.case:
        spec = json.loads(Path(args.case).read_text())
        Path(spec["result"]).write_text(json.dumps(run_case(spec)))
        return

    started = time.perf_counter()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if set(methods) - set(METHODS):
        ap.error(f"--methods takes {', '.join(METHODS)}")
    query_a, query_b, docs = pools(args.data, max(sizes), args.query, args.second_query)
    report: dict[str, Any] = {
        "dataset": "beir-scifact test", "model": args.model, "max_doc_tokens": args.max_doc_tokens,
        "query": query_a.text, "second_query": query_b.text,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "runtime": runtime(), "load_avg_start": os.getloadavg(), "cases": [], "skipped": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for method in methods:
                spent = time.perf_counter() - started
                if args.budget_s and spent >= args.budget_s:
                    report["skipped"].append({"method": method, "docs": n})
                    print(f"{method} n={n}: skipped, budget spent ({spent:.0f} s)", flush=True)
                    continue
                spec = {"method": method, "model": args.model, "threads": args.threads,
                        "max_doc_tokens": args.max_doc_tokens, "query_a": query_a.text,
                        "query_b": query_b.text, "result": f"{tmp}/{method}-{n}.out.json",
                        "docs": [{"id": d.id, "title": d.title, "text": d.text}
                                 for d in docs[:n]]}
                path = Path(tmp) / f"{method}-{n}.json"
                path.write_text(json.dumps(spec))
                load = os.getloadavg()[0]
                done = subprocess.run([sys.executable, __file__, "--case", str(path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
                if done.returncode != 0:
                    raise SystemExit(f"case {method} n={n} failed:\n{done.stderr[-3000:]}")
                row = json.loads(Path(spec["result"]).read_text())
                row["load_avg"] = [round(load, 2), round(os.getloadavg()[0], 2)]
                print(json.dumps(row), flush=True)
                report["cases"].append(row)
                report["elapsed_s"] = round(time.perf_counter() - started, 1)
                out.write_text(json.dumps(report, indent=1) + "\n")
    report["complete"] = not report["skipped"]
    report["load_avg_end"] = os.getloadavg()
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
