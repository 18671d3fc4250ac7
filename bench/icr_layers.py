"""Which decoder layers should ICR read? A layer sweep on BEIR SciFact (test), on the CPU.

ICR's score sums the query span's attention over a set of layers (``docs/methods.md`` §1). One
pass per query reads *every* layer's query-span rows (prefix prefilled once, query and
"N/A" passes over the shared cache, exactly as :class:`~pursuit.rerankers.icr.ICRReranker`
does) and keeps s(t) per layer; each candidate layer set is then scored from the same
numbers, so the sets are compared on identical forward passes:

- ``all`` layers, the ``middle`` third (the default), the ``first`` and ``last`` thirds,
  the ``upper`` two thirds, and every single layer.

Reported per set: nDCG@10 and RR@10 over BM25's top ``--k``, and a paired two-sided t-test
against ``all`` and against BM25 alone (Holm-corrected over the named sets). A set's cost
is the prefill up to its deepest layer (ICR stops the forward pass there), given as the
fraction of the model's layers.

Run:
    .venv/bin/python bench/icr_layers.py [--model qwen2.5-coder-0.5b] [--queries 100] [--k 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pursuit.indexes.datasets.beir import Dataset, read_beir
from pursuit.indexes.records import Query, Ranking
from pursuit.rerankers.attention import decoder_layers, prefill, span_attention
from pursuit.rerankers.base import cached_lm, strict_ranking
from pursuit.rerankers.icr import CALIBRATION_QUERY, ICRReranker, calibrated_scores
from pursuit.retrievers.evaluation.compare import compare

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from pools import bm25_pools  # noqa: E402
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEASURES = ("nDCG@10", "RR@10")


def layer_sets(n: int) -> dict[str, tuple[int, ...]]:
    """The named layer sets compared, for a model with ``n`` decoder layers."""
    third = n // 3
    sets = {"all": tuple(range(n)), "middle": tuple(range(third, n - third)),
            "first": tuple(range(third)), "last": tuple(range(n - third, n)),
            "upper": tuple(range(third, n))}
    sets.update({f"layer{i}": (i,) for i in range(n)})
    return sets


def per_layer_scores(icr: ICRReranker, query: str, docs: list[Any]) -> tuple[torch.Tensor,
                                                                            list[tuple[int, int]]]:
    """Calibrated s(t) per layer, shape (layers, prefix tokens), and the document spans.

    ``docs`` are in prompt order (first-stage best last). Calibration is linear in s(t), so
    summing calibrated per-layer rows over a set equals calibrating the set's sums.
    """
    asked, calib = icr.prompt(query, docs), icr.prompt(CALIBRATION_QUERY, docs)
    model = icr.lm.model
    n_layers = len(decoder_layers(model))
    cache = prefill(model, asked.prefix_ids)
    n = asked.query_start
    rows = []
    for span in (asked.query_ids, calib.query_ids):
        got = span_attention(model, cache, span, range(n_layers), keep_rows=True)
        rows.append(torch.stack([got.rows[i].sum(dim=0).mean(dim=0)[:n]
                                 for i in range(n_layers)]))
    return rows[0].double() - rows[1].double(), asked.doc_spans


def set_scores(calibrated: torch.Tensor, layers: tuple[int, ...],
               spans: list[tuple[int, int]]) -> list[float]:
    """ICR document scores when reading ``layers`` (the same filter as the reranker)."""
    summed = calibrated[list(layers)].sum(dim=0)
    return calibrated_scores(summed, torch.zeros_like(summed), spans)


def main() -> None:
    """Run the sweep; print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--queries", type=int, default=100, help="first N test queries (0: all)")
    ap.add_argument("--k", type=int, default=10, help="BM25 depth that is reranked")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or ROOT / "bench" / "results" / f"icr_layers-{args.model}.json")
    full = read_beir(args.data, "test")
    queries = full.queries[: args.queries] if args.queries else full.queries
    dataset = Dataset(full.name, full.corpus, queries, full.qrels)
    started = time.perf_counter()
    icr = ICRReranker(cached_lm(args.model), layers="all")
    n_layers = len(icr.layers)
    sets = layer_sets(n_layers)
    rankings: dict[str, list[Ranking]] = {name: [] for name in sets}
    pools = bm25_pools(full.corpus, queries, args.k, source=args.data)
    t0 = time.perf_counter()
    for done, (query, pool) in enumerate(zip(queries, pools, strict=True), start=1):
        ids = pool.doc_ids()
        docs = {h.doc_id: h.doc for h in pool}
        prompt_docs = [docs[i] for i in ids[::-1]]
        calibrated, spans = per_layer_scores(icr, query.text, prompt_docs)
        for name, layers in sets.items():
            scores = set_scores(calibrated, layers, spans)[::-1]
            rankings[name].append(strict_ranking(Query.coerce(query), ids, scores,
                                                 pipeline=f"icr({name})", docs=docs))
        if done % 10 == 0 or done == len(queries):
            rate = (time.perf_counter() - t0) / done
            print(f"{done}/{len(queries)} queries, {rate:.2f} s/query, load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    named = ["all", "middle", "first", "last", "upper"]
    versus_bm25 = compare({"bm25": pools, **{n: rankings[n] for n in named}}, dataset, "bm25",
                          measures=MEASURES).to_dict()
    versus_all = compare({n: rankings[n] for n in named}, dataset, "all",
                         measures=MEASURES).to_dict()
    singles = compare({"all": rankings["all"], **{f"layer{i}": rankings[f"layer{i}"]
                                                    for i in range(n_layers)}},
                      dataset, "all", measures=("nDCG@10",)).to_dict()
    report = {"model": args.model, "dataset": f"{full.name} test", "queries": len(queries),
              "k": args.k, "layers": n_layers, "runtime": runtime(icr.lm.dtype),
              "prefill_fraction": {n: round((max(sets[n]) + 1) / n_layers, 3) for n in named},
              "s_per_query_all_layers": round((time.perf_counter() - t0) / len(queries), 2),
              "versus_bm25": versus_bm25, "versus_all": versus_all, "single_layers": singles,
              "elapsed_s": round(time.perf_counter() - started, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    from rich.console import Console

    console = Console()
    console.print(compare({"bm25": pools, **{n: rankings[n] for n in named}}, dataset, "bm25",
                          measures=MEASURES).to_table(show_p=True))
    console.print(compare({n: rankings[n] for n in named}, dataset, "all",
                          measures=MEASURES).to_table(show_p=True))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
