"""The floor a reranker must clear: nDCG@10 of BM25's top k in a random order (SciFact test).

A reranker of BM25's top ``--k`` that reads no relevance signal lands near the mean of
random permutations of that pool. Shuffles ``--shuffles`` times with a fixed seed and prints
BM25's own nDCG@10 and R@k, then the mean, lowest and highest nDCG@10 of the shuffles.

Run:
    .venv/bin/python bench/random_order.py [--k 10] [--shuffles 200] [--queries 0]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from pursuit.indexes.datasets.beir import read_beir
from pursuit.indexes.records import Ranking
from pursuit.retrievers.evaluation.metrics import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from pools import bm25_pools  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def shuffled(pools: list[Ranking], rng: random.Random) -> list[Ranking]:
    """Each pool's documents in a random order (scores strictly decreasing)."""
    out = []
    for pool in pools:
        ids = pool.doc_ids()
        rng.shuffle(ids)
        out.append(Ranking.from_scores(pool.query, [(d, float(len(ids) - i))
                                                    for i, d in enumerate(ids)],
                                       pipeline="random"))
    return out


def main() -> None:
    """Print BM25's numbers and those of its shuffled pools."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--shuffles", type=int, default=200)
    ap.add_argument("--queries", type=int, default=0, help="first N test queries (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    full = read_beir(args.data, "test")
    queries = full.queries[: args.queries] if args.queries else full.queries
    pools = bm25_pools(full.corpus, queries, args.k, source=args.data, fetch_docs=False)
    qrels = {q.id: full.qrels[q.id] for q in queries if q.id in full.qrels}
    base = evaluate(pools, qrels, ["nDCG@10", f"R@{args.k}"]).aggregate
    print(f"BM25 top {args.k}: " + ", ".join(f"{m} {v:.4f}" for m, v in base.items()))
    rng = random.Random(args.seed)
    values = [evaluate(shuffled(pools, rng), qrels, ["nDCG@10"]).aggregate["nDCG@10"]
              for _ in range(args.shuffles)]
    print(f"random order, {args.shuffles} shuffles: nDCG@10 mean {sum(values) / len(values):.4f}"
          f", lowest {min(values):.4f}, highest {max(values):.4f}")


if __name__ == "__main__":
    main()
