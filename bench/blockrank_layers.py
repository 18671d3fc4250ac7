"""Zero-shot BlockRank: which layer and which signal tokens? A sweep on BEIR SciFact (test).

BlockRank scores a document by the attention its block receives from signal tokens at one
middle layer (``docs/methods.md`` §2). The paper reads the answer prefix's last token at layer
20 of 32 after fine-tuning; zero-shot, neither choice has been measured for the packaged
models. One pass per query runs every layer (the documents' keys and values once, then one
query-block pass per signal choice over them) and keeps each layer's per-document mass, so
every (signal, layer set) pair is scored from the same numbers:

- signals: ``bracket`` (the last token, ``[`` of ``Final Answer: [``: the reranker's
  default), ``tail8`` (the last 8 tokens), ``query`` (the query text's own tokens, as ICR
  reads them) and ``block`` (every token of the query block);
- layer sets: every single layer, and the mean mass over the first, middle and last thirds
  and over all layers.

The first ``--select`` queries choose the best pair by nDCG@10; the remaining queries are
held out and report it against BM25 alone and against the paper's reading (``bracket`` at
the middle layer; the reranker's default before this sweep, reported as ``default``), with
paired two-sided t-tests (Holm-corrected), so the choice is not graded on the queries that
made it.

Run:
    .venv/bin/python bench/blockrank_layers.py [--model qwen2.5-coder-0.5b] [--queries 300]
        [--select 100] [--k 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

from pursuit.indexes.datasets.beir import Dataset, read_beir
from pursuit.indexes.records import Query, Ranking
from pursuit.rerankers.base import cached_lm, strict_ranking
from pursuit.rerankers.blockrank.blocks import BlockLayout, build_layout
from pursuit.rerankers.blockrank.forward import BlockForward
from pursuit.rerankers.blockrank.reranker import DEFAULTS, resolve_layer
from pursuit.retrievers.evaluation.compare import compare
from pursuit.retrievers.evaluation.metrics import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from pools import bm25_pools  # noqa: E402
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEASURES = ("nDCG@10", "RR@10")
SIGNALS = ("bracket", "tail8", "query", "block")


def layer_sets(n: int) -> dict[str, tuple[int, ...]]:
    """Named layer sets for a model with ``n`` decoder layers (single layers included)."""
    third = n // 3
    sets = {"all": tuple(range(n)), "first": tuple(range(third)),
            "middle": tuple(range(third, n - third)), "last": tuple(range(n - third, n))}
    sets.update({f"layer{i}": (i,) for i in range(n)})
    return sets


def signal_layouts(layout: BlockLayout) -> dict[str, BlockLayout]:
    """The same prompt with each signal choice (``layout`` is built with ``signal="query"``,
    so its signal is the query text's own tokens)."""
    n = len(layout.query)
    picks = {"bracket": (n - 1,), "tail8": tuple(range(max(n - 8, 0), n)),
             "query": layout.signal, "block": tuple(range(n))}
    return {name: dataclasses.replace(layout, signal=picks[name]) for name in SIGNALS}


def main() -> None:
    """Run the sweep; print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--queries", type=int, default=300, help="first N test queries (0: all)")
    ap.add_argument("--select", type=int, default=100,
                    help="the first N of them choose the configuration; the rest are held out")
    ap.add_argument("--k", type=int, default=10, help="BM25 depth that is reranked")
    ap.add_argument("--max-doc-tokens", type=int, default=DEFAULTS["max_doc_tokens"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or ROOT / "bench" / "results" / f"blockrank_layers-{args.model}.json")
    full = read_beir(args.data, "test")
    queries = full.queries[: args.queries] if args.queries else full.queries
    if not 0 < args.select < len(queries):
        ap.error(f"--select must leave held-out queries: 0 < {args.select} < {len(queries)}")
    started = time.perf_counter()
    lm = cached_lm(args.model)
    n_layers = len(BlockForward(lm.model, 0).layers)
    default_layer = resolve_layer("middle", n_layers)
    engine = BlockForward(lm.model, n_layers - 1)
    sets = layer_sets(n_layers)
    pools = bm25_pools(full.corpus, queries, args.k, source=args.data)
    rankings: dict[str, list[Ranking]] = {f"{s}/{n}": [] for s in SIGNALS for n in sets}
    instr = None
    t0 = time.perf_counter()
    with torch.inference_mode():
        for done, (query, pool) in enumerate(zip(queries, pools, strict=True), start=1):
            ids = pool.doc_ids()
            docs = {h.doc_id: h.doc for h in pool}
            layout = build_layout(lm, query.text, [docs[i] for i in ids],
                                  max_doc_tokens=args.max_doc_tokens, signal="query")
            if instr is None:  # the instruction block is the same for every query
                instr = engine.instruction_kv(layout.instruction, n_layers - 1)
            kv = engine.docs_kv(instr, layout.docs, n_layers - 1, "batched")
            for signal, variant in signal_layouts(layout).items():
                rows, _ = engine.query_pass(instr, kv, variant, every_layer=True)
                for name, layers in sets.items():
                    scores = rows[list(layers)].mean(dim=0).tolist()
                    rankings[f"{signal}/{name}"].append(strict_ranking(
                        Query.coerce(query), ids, scores, pipeline=f"blockrank({signal}/{name})",
                        docs=docs))
            if done % 10 == 0 or done == len(queries):
                rate = (time.perf_counter() - t0) / done
                print(f"{done}/{len(queries)} queries, {rate:.2f} s/query, load "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
    per_query_s = (time.perf_counter() - t0) / len(queries)

    chosen_ids = {q.id for q in queries[: args.select]}
    qrels = {q.id: full.qrels[q.id] for q in queries if q.id in full.qrels}

    def ndcg(runs: list[Ranking], keep: set[str]) -> float:
        judged = {q: r for q, r in qrels.items() if q in keep}
        return evaluate([r for r in runs if r.query.id in keep], judged, ["nDCG@10"]).aggregate[
            "nDCG@10"]

    all_ids = {q.id for q in queries}
    table = {name: {"select": round(ndcg(r, chosen_ids), 4),
                    "held_out": round(ndcg(r, all_ids - chosen_ids), 4),
                    "all": round(ndcg(r, all_ids), 4)} for name, r in rankings.items()}
    best = max(rankings, key=lambda name: (table[name]["select"], name))
    default = f"bracket/layer{default_layer}"
    held = queries[args.select:]
    held_out = Dataset(full.name, full.corpus, held, full.qrels)
    keep = {q.id for q in held}

    def only(runs: list[Ranking]) -> list[Ranking]:
        return [r for r in runs if r.query.id in keep]

    tested = compare({"bm25": only(pools), "default": only(rankings[default]),
                      "chosen": only(rankings[best])}, held_out, "bm25", measures=MEASURES)
    versus_default = compare({"default": only(rankings[default]),
                              "chosen": only(rankings[best])}, held_out, "default",
                             measures=MEASURES).to_dict()
    bm25 = {"select": round(ndcg(pools, chosen_ids), 4),
            "held_out": round(ndcg(pools, all_ids - chosen_ids), 4),
            "all": round(ndcg(pools, all_ids), 4)}
    report = {"model": args.model, "dataset": f"{full.name} test", "queries": len(queries),
              "select": args.select, "k": args.k, "max_doc_tokens": args.max_doc_tokens,
              "layers": n_layers, "default": default, "chosen": best, "bm25": bm25,
              "runtime": runtime(lm.dtype),
              "ndcg@10": table, "held_out_vs_bm25": tested.to_dict(),
              "held_out_chosen_vs_default": versus_default,
              "s_per_query_every_layer_4_signals": round(per_query_s, 2),
              "elapsed_s": round(time.perf_counter() - started, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"BM25 nDCG@10: {bm25}")
    for signal in SIGNALS:
        print(signal, " ".join(f"{n}={table[f'{signal}/{n}']['select']:.3f}"
                               for n in ("all", "first", "middle", "last")),
              "| best single:", max((table[f"{signal}/layer{i}"]["select"], i)
                                    for i in range(n_layers)))
    print(f"chosen on the first {args.select}: {best} {table[best]}; default {default} "
          f"{table[default]}")
    from rich.console import Console

    Console().print(tested.to_table(show_p=True))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
