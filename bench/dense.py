"""Dense retrieval on BEIR SciFact (test): effectiveness, build time, latency, memory.

Encodes the corpus with the packaged all-MiniLM-L6-v2 (or ``--encoder``), builds a ``Flat``
index and measures nDCG@10 / R@100 of :class:`DenseRetriever` (target: the published
all-MiniLM-L6-v2 SciFact nDCG@10 of 0.645). Then times query latency (whole batch per
query, and one query at a time, with and without encoding), builds ``HNSW32`` and
``IVF64,Flat`` from the same vectors and reports their recall@10/@100 against ``Flat`` and
their nDCG@10. Peak RSS is the process maximum (``resource.getrusage``).
Prints a summary and writes ``bench/results/dense-<dtype>.json`` (the dtype the encoder
ran in, e.g. ``dense-bfloat16.json``).

``--batch-sweep 16,32,64,128`` instead times only the encoding of ``--sweep-docs`` random
corpus documents at each batch size, plus one pass in unsorted batches (documents in random
order, one ``encode`` call per batch, so no length sorting) at ``--batch-size``; it writes
``bench/results/dense-sweep-<dtype>.json``.

Run:
    HF_HUB_OFFLINE=1 .venv/bin/python bench/dense.py [--data ../shared/data/beir-scifact]
        [--dtype auto|float32|bfloat16|float16] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pursuit.indexes.datasets.beir import read_beir
from pursuit.indexes.docstore import DocStore
from pursuit.indexes.vectors.store import FaissIndex
from pursuit.retrievers.dense import DenseRetriever
from pursuit.retrievers.encoders import SentenceTransformerEncoder
from pursuit.retrievers.evaluation.metrics import evaluate
from pursuit.retrievers.lm.dtypes import DTYPE_CHOICES

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEASURES = ["nDCG@10", "R@100", "R@1000"]


def recall_vs(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean share of the exact top ``k`` rows that the approximate search also returned."""
    return float(np.mean([len(set(a[:k].tolist()) & set(b[:k].tolist())) / k
                          for a, b in zip(found, truth, strict=True)]))


def batch_sweep(encoder: SentenceTransformerEncoder, texts: list[str], sizes: list[int],
                n_docs: int) -> dict[str, Any]:
    """Docs/s encoding a seeded random sample of ``texts`` at each batch size, and unsorted."""
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), size=min(n_docs, len(texts)),
                                           replace=False)]
    encoder.encode_document(sample[:encoder.batch_size])  # warm-up: first-call overheads
    default = encoder.batch_size
    rates: dict[str, float] = {}
    for size in sizes:
        encoder.batch_size = size
        t = time.perf_counter()
        encoder.encode_document(sample)
        rates[str(size)] = round(len(sample) / (time.perf_counter() - t), 1)
        print(f"  batch {size}: {rates[str(size)]} docs/s")
    encoder.batch_size = default
    t = time.perf_counter()
    for start in range(0, len(sample), default):  # one call per batch: no length sorting
        encoder.encode_document(sample[start:start + default])
    unsorted = round(len(sample) / (time.perf_counter() - t), 1)
    print(f"  batch {default}, unsorted: {unsorted} docs/s")
    return {"n_docs": len(sample), "docs_per_s_by_batch": rates,
            "unsorted": {"batch_size": default, "docs_per_s": unsorted}}


def main() -> None:
    """Run the benchmark and print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--encoder", default=None, help="hub id or folder (default: packaged MiniLM)")
    ap.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help="encoder dtype")
    ap.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    ap.add_argument("--k", type=int, default=1000, help="retrieval depth for the metrics")
    ap.add_argument("--single", type=int, default=100, help="queries timed one at a time")
    ap.add_argument("--batch-sweep", default=None,
                    help="comma-separated batch sizes: time encoding only, then stop")
    ap.add_argument("--sweep-docs", type=int, default=512, help="documents the sweep encodes")
    args = ap.parse_args()

    ds = read_beir(args.data, "test")
    t = time.perf_counter()
    encoder = SentenceTransformerEncoder(args.encoder, dtype=args.dtype,
                                         batch_size=args.batch_size)
    load_s = time.perf_counter() - t
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.batch_sweep:
        print(f"Encoding throughput ({encoder.model_id}, {encoder.dtype}, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")
        sweep = batch_sweep(encoder, [d.contents() for d in ds.corpus],
                            [int(x) for x in args.batch_sweep.split(",")], args.sweep_docs)
        sweep.update(dtype=encoder.dtype, cpus=os.cpu_count(), load_avg_1m=os.getloadavg()[0])
        out = out_dir / f"dense-sweep-{encoder.dtype}.json"
        out.write_text(json.dumps(sweep, indent=2) + "\n")
        print(f"  wrote {out}")
        return
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        store = DocStore.create(Path(tmp) / "docs.sqlite")
        rows = store.add(ds.corpus)
        t, cpu = time.perf_counter(), time.process_time()
        vectors = encoder.encode_document([d.contents() for d in ds.corpus])
        # CPU seconds as well as wall seconds: on a shared machine the wall time depends
        # on what else runs, the CPU time much less.
        encode_s, encode_cpu_s = time.perf_counter() - t, time.process_time() - cpu

        builds, indexes = {}, {}
        for factory in ("Flat", "HNSW32", "IVF64,Flat"):
            t = time.perf_counter()
            index = FaissIndex(encoder.dim, factory=factory)
            index.add(vectors, rows)
            index.save(Path(tmp) / factory.replace(",", "_"))
            builds[factory] = round(time.perf_counter() - t, 3)
            indexes[factory] = FaissIndex.load(Path(tmp) / factory.replace(",", "_"), mmap=True)

        dense = DenseRetriever(indexes["Flat"], encoder, store, k=args.k)
        t = time.perf_counter()
        rankings = dense.retrieve_batch(ds.queries, args.k)
        batch_s = time.perf_counter() - t
        metrics = evaluate(rankings, ds.qrels, MEASURES).aggregate

        single = [q for q in ds.queries[:args.single]]
        per_query = []
        for q in single:
            t = time.perf_counter()
            dense.retrieve(q, 10)
            per_query.append(time.perf_counter() - t)
        q_vecs = encoder.encode_query([q.text for q in ds.queries])
        search_only = []
        for factory, index in indexes.items():
            index.search(q_vecs[:1], 10)  # warm: builds any GPU copy, touches the mapped pages
            t = time.perf_counter()
            for i in range(len(q_vecs)):
                index.search(q_vecs[i:i + 1], 10)
            search_only.append((factory, (time.perf_counter() - t) / len(q_vecs)))

        truth, _ = indexes["Flat"].search(q_vecs, 100)
        ann = {}
        for factory in ("HNSW32", "IVF64,Flat"):
            found, _ = indexes[factory].search(q_vecs, 100)
            r = DenseRetriever(indexes[factory], encoder, store, k=args.k)
            ann[factory] = {
                "recall@10_vs_flat": round(recall_vs(found, truth, 10), 4),
                "recall@100_vs_flat": round(recall_vs(found, truth, 100), 4),
                "nDCG@10": round(evaluate(r.retrieve_batch(ds.queries, args.k), ds.qrels,
                                          ["nDCG@10"]).aggregate["nDCG@10"], 4),
                "config": {k: v for k, v in indexes[factory].describe().items()
                           if k in ("ef_search", "ef_construction", "nprobe", "nlist")},
            }
        store.close()

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    nq = len(ds.queries)
    result = {
        "dataset": f"{ds.name} test", "n_docs": len(ds.corpus), "n_queries": nq, "k": args.k,
        "dtype": encoder.dtype, "batch_size": encoder.batch_size,
        "encoder": dict(encoder.describe()), "encoder_load_s": round(load_s, 2),
        "encode_docs_s": round(encode_s, 2), "docs_per_s": round(len(ds.corpus) / encode_s, 1),
        "encode_docs_cpu_s": round(encode_cpu_s, 1),
        "docs_per_cpu_s": round(len(ds.corpus) / encode_cpu_s, 2),
        "build_s": builds,
        **{m: round(metrics[m], 4) for m in MEASURES},
        "batch_ms_per_query": round(1000 * batch_s / nq, 2),
        "single_ms_per_query_median": round(1000 * statistics.median(per_query), 2),
        "search_only_ms_per_query": {f: round(1000 * s, 3) for f, s in search_only},
        "ann": ann, "peak_rss_mib": round(peak_mib, 1), "cpus": os.cpu_count(),
        # Other work shares the machine: the 1/5/15-minute load before and after the run.
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "runtime": runtime(encoder.dtype),
    }
    print(f"Dense ({encoder.model_id}, {encoder.dtype}, batch {encoder.batch_size}) on "
          f"{result['dataset']} ({len(ds.corpus)} docs, {nq} queries, k={args.k})")
    print(f"  Flat: nDCG@10 {result['nDCG@10']:.4f}   R@100 {result['R@100']:.4f}   "
          f"R@1000 {result['R@1000']:.4f}   (published nDCG@10 0.645)")
    print(f"  encoder load {load_s:.1f} s; encode {len(ds.corpus)} docs {encode_s:.1f} s "
          f"({result['docs_per_s']} docs/s; {encode_cpu_s:.0f} CPU s, {result['docs_per_cpu_s']} "
          f"docs per CPU s); index build+save (s): {builds}")
    print(f"  latency per query: batch {result['batch_ms_per_query']} ms, single (median) "
          f"{result['single_ms_per_query_median']} ms incl. encoding; search only (ms): "
          f"{result['search_only_ms_per_query']}")
    for factory, row in ann.items():
        print(f"  {factory}: recall@10 {row['recall@10_vs_flat']}  recall@100 "
              f"{row['recall@100_vs_flat']} vs Flat, nDCG@10 {row['nDCG@10']}  {row['config']}")
    print(f"  peak RSS {peak_mib:.0f} MiB; load average before {result['load_avg_before']}, "
          f"after {result['load_avg_after']}")
    out = out_dir / f"dense-{encoder.dtype}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  wrote {out}")


if __name__ == "__main__":
    main()
