"""Where ICR's and listwise's time goes on the CPU, phase by phase, and what bounds their ratio.

ICR (exactly as :meth:`~pursuit.rerankers.icr.ICRReranker.prompt_scores` runs it): building
the two prompts, one prefill of the documents prefix up to the deepest layer read, the query
pass and the "N/A" pass over that cache. Listwise (one window, as
:class:`~pursuit.rerankers.listwise.ListwiseReranker` runs it at ``k`` up to its window): the
whole greedy ``generate`` call, and separately one prefill of the same prompt through every
layer, so generation's share is the difference. Generated tokens are counted by tokenising
the decoded answer again, so the end-of-turn token that stops generation is not among them.

Since listwise must at least prefill its prompt and ICR must at least prefill its prefix,
``listwise total / ICR prefill`` is the largest listwise/ICR ratio ICR could reach on this
machine if its two short passes cost nothing.

Run:
    HF_HUB_OFFLINE=1 .venv/bin/python bench/rerank_cost.py [--model qwen2.5-coder-1.5b] \\
        [--queries 10] [--k 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pursuit.indexes.datasets.beir import read_beir
from pursuit.rerankers.attention import prefill, span_attention
from pursuit.rerankers.base import cached_lm
from pursuit.rerankers.icr import CALIBRATION_QUERY, ICRReranker
from pursuit.rerankers.listwise import ListwiseReranker

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from pools import bm25_pools  # noqa: E402
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def icr_phases(icr: ICRReranker, query: str, docs: Sequence[Any]) -> dict[str, float]:
    """Seconds per phase of one ICR call on ``docs`` given best first, and the prefix length."""
    t0 = time.perf_counter()
    prompt_docs = list(docs)[::-1]  # the first-stage best goes last, as score_docs does
    asked, calib = icr.prompt(query, prompt_docs), icr.prompt(CALIBRATION_QUERY, prompt_docs)
    t1 = time.perf_counter()
    model = icr.lm.model
    cache = prefill(model, asked.prefix_ids, last_layer=icr.layers[-1])
    t2 = time.perf_counter()
    span_attention(model, cache, asked.query_ids, icr.layers)
    t3 = time.perf_counter()
    span_attention(model, cache, calib.query_ids, icr.layers)
    t4 = time.perf_counter()
    return {"prefix_tokens": len(asked.prefix_ids), "prompt_s": t1 - t0, "prefill_s": t2 - t1,
            "query_pass_s": t3 - t2, "calibration_pass_s": t4 - t3, "total_s": t4 - t0}


def listwise_phases(listwise: ListwiseReranker, query: str,
                    docs: Sequence[Any]) -> dict[str, float]:
    """Seconds of one listwise window over ``docs``: its prompt's prefill and the whole call."""
    assert listwise.lm is not None
    passages = [listwise.passage(d) for d in docs]
    ids = listwise.prompt_ids(query, passages)
    t0 = time.perf_counter()
    prefill(listwise.lm.model, ids)
    t1 = time.perf_counter()
    answer = listwise.generate(query, passages)
    t2 = time.perf_counter()
    generated = len(listwise.lm.tokenizer(answer, add_special_tokens=False)["input_ids"])
    return {"prompt_tokens": len(ids), "prefill_s": t1 - t0, "total_s": t2 - t1,
            "generation_s": (t2 - t1) - (t1 - t0), "generated_tokens": generated}


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-field means over claims, rounded."""
    return {key: round(statistics.fmean(r[key] for r in rows), 3) for key in rows[0]}


def main() -> None:
    """Measure the phases over the first test claims; print and save the numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--queries", type=int, default=10, help="first N test claims")
    ap.add_argument("--k", type=int, default=10, help="BM25 depth (one listwise window)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or ROOT / "bench" / "results" / f"rerank_cost-{args.model}.json")
    ds = read_beir(args.data, "test")
    queries = ds.queries[: args.queries]
    lm = cached_lm(args.model)
    icr, listwise = ICRReranker(lm), ListwiseReranker(lm)
    if args.k > listwise.window:
        raise SystemExit(f"--k {args.k} needs several listwise windows; this script times one "
                         f"(k <= {listwise.window})")
    pools = bm25_pools(ds.corpus, queries, args.k, source=args.data)
    load_start = os.getloadavg()
    with torch.inference_mode():
        icr.prompt_scores(queries[0].text, [h.doc for h in pools[0]][:2])  # warm-up
    icr_rows, lw_rows = [], []
    for n, (query, pool) in enumerate(zip(queries, pools, strict=True), start=1):
        docs = [h.doc for h in pool]
        icr_rows.append(icr_phases(icr, query.text, docs))
        lw_rows.append(listwise_phases(listwise, query.text, docs))
        print(f"{n}/{len(queries)}: icr {icr_rows[-1]['total_s']:.1f} s "
              f"(prefill {icr_rows[-1]['prefill_s']:.1f}), listwise "
              f"{lw_rows[-1]['total_s']:.1f} s (prefill {lw_rows[-1]['prefill_s']:.1f}, "
              f"{lw_rows[-1]['generated_tokens']:.0f} tokens), load {os.getloadavg()[0]:.1f}",
              flush=True)
    icr_mean, lw_mean = summary(icr_rows), summary(lw_rows)
    report = {
        "model": args.model, "dataset": "beir-scifact test", "queries": len(queries),
        "k": args.k, "threads": torch.get_num_threads(), "icr_layers": list(icr.layers),
        "runtime": runtime(lm.dtype),
        "load_avg": [load_start[0], os.getloadavg()[0]],
        "icr": icr_mean, "listwise": lw_mean,
        "listwise_over_icr": round(lw_mean["total_s"] / icr_mean["total_s"], 2),
        "ceiling_listwise_over_icr_prefill": round(lw_mean["total_s"] / icr_mean["prefill_s"], 2),
        "listwise_generation_share": round(lw_mean["generation_s"] / lw_mean["total_s"], 3),
        "icr_prefill_share": round(icr_mean["prefill_s"] / icr_mean["total_s"], 3),
        "per_claim": {"icr": icr_rows, "listwise": lw_rows},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "per_claim"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
