"""Hybrid retrieval on BEIR SciFact: does fusing BM25 and dense beat the best single system?

Builds (once) an index of SciFact with BM25 and the packaged all-MiniLM-L6-v2, then:

1. picks the fusion weight on the **train** split (809 claims) by nDCG@10 over a grid,
   so the test split is never used for tuning;
2. on the **test** split (300 claims) compares BM25, dense, the tuned weighted fusion, an
   untuned 0.5/0.5 fusion and reciprocal-rank fusion, with paired t-tests (Holm-corrected)
   against the best single system.

Prints the table and writes ``bench/results/hybrid.json``.

Run:
    .venv/bin/python bench/hybrid.py [--data ../shared/data/beir-scifact] [--index DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.beir import read_beir
from pursuit.retrievers.encoders import SentenceTransformerEncoder
from pursuit.retrievers.evaluation.compare import compare
from pursuit.retrievers.evaluation.metrics import evaluate
from pursuit.retrievers.pipeline_parser import parse_pipeline
from pursuit.retrievers.registry import index_stages

ROOT = Path(__file__).resolve().parents[1]
GRID = [round(0.1 * i, 1) for i in range(1, 10)]


def main() -> None:
    """Run the benchmark; print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--index", default=str(ROOT / "bench" / "results" / "scifact-index"))
    args = ap.parse_args()
    console = Console()

    test, train = read_beir(args.data, "test"), read_beir(args.data, "train")
    encoder = SentenceTransformerEncoder()
    index_path = Path(args.index)
    started = time.perf_counter()
    if (index_path / "manifest.json").exists():
        index = SearchIndex.open(index_path, encoder=encoder)
    else:
        index = SearchIndex.build(test.corpus, index_path, source=args.data, encoder=encoder,
                                  show_progress=True)
    build_s = time.perf_counter() - started
    registry = index_stages(index, encoder=encoder)

    # Candidates from each retriever once; every fusion re-uses them.
    tuning = {}
    for w in GRID:
        stage = parse_pipeline(f"{w}*bm25%1000 + {1 - w:.1f}*dense%1000", registry)
        tuning[w] = evaluate(stage.batch(train.queries), train.qrels).aggregate["nDCG@10"]
        console.print(f"train: w_bm25={w}  nDCG@10={tuning[w]:.4f}")
    best_w = max(GRID, key=lambda w: (tuning[w], -abs(w - 0.5)))

    systems = {
        "bm25": "bm25",
        "dense": "dense",
        f"hybrid w={best_w} (tuned on train)": f"{best_w}*bm25%1000 + {1 - best_w:.1f}*dense%1000",
        "hybrid w=0.5": "0.5*bm25%1000 + 0.5*dense%1000",
        "rrf": "bm25%1000 | dense%1000",
    }
    stages = {name: parse_pipeline(text, registry) for name, text in systems.items()}
    singles = {name: evaluate(stages[name].batch(test.queries), test.qrels).aggregate["nDCG@10"]
               for name in ("bm25", "dense")}
    baseline = max(singles, key=lambda name: singles[name])
    comparison = compare(stages, test, baseline)
    console.print(comparison.to_table(show_p=True))

    out = ROOT / "bench" / "results" / "hybrid.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"pipelines": systems, "train_grid_ndcg10": tuning,
                               "chosen_weight": best_w, "baseline": baseline,
                               "index_seconds": build_s,
                               "comparison": comparison.to_dict()}, indent=2) + "\n")
    console.print(f"wrote {out}")
    index.close()


if __name__ == "__main__":
    main()
