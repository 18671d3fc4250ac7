"""LLM-QL on BEIR SciFact (test): the trained LLM encoder vs the same model untrained vs MiniLM.

Three dense systems over the same documents and queries, each through a real index
(``SearchIndex.build`` with the encoder, then the ``dense`` stage at depth 100):

* ``minilm``: the packaged all-MiniLM-L6-v2;
* ``llm-base``: the base causal LM, untrained, with the trained model's prompts and ``[E]``;
* ``llm-ql``: the LLM-QL-trained checkpoint (``pursuit train llm-ql``).

nDCG@10 and R@100 with paired t-tests (``pursuit.retrievers.evaluation.compare``, Holm-corrected)
against ``minilm`` and against ``llm-base``. The training command, its wall time, steps and
final losses are copied from the checkpoint's ``pursuit-llmql.json``; when ``--trained``
does not exist yet it is trained here first (``--train-max-steps`` caps each stage) and
timed. Writes ``bench/results/llmql_scifact.json`` (``-smoke`` with a subset).

The recorded CPU run (SmolLM2-135M, about 47 min of training and 75 min of evaluation on 2
cores; BENCHMARKS.md)::

    HF_HUB_OFFLINE=1 .venv/bin/pursuit train llm-ql ../shared/data/beir-scifact \\
        --out runs/llmql-smollm2 --model smollm2-135m --max-doc-tokens 256 \\
        --stage1-lr 5e-5 --stage2-lr 5e-5 --stage2-epochs 1 --hard-negatives 1 --device cpu
    HF_HUB_OFFLINE=1 .venv/bin/python bench/llmql_scifact.py --trained runs/llmql-smollm2/model \\
        --threads 2

Larger run (the training is the long part: hours on 2 CPU cores for the 0.5B, minutes on a GPU)::

    nice .venv/bin/pursuit train llm-ql ../shared/data/beir-scifact --out runs/llmql-0.5b \\
        --model qwen2.5-coder-0.5b --device auto
    HF_HUB_OFFLINE=1 nice .venv/bin/python bench/llmql_scifact.py --trained runs/llmql-0.5b/model

Smoke (a few training steps, a corpus subset)::

    HF_HUB_OFFLINE=1 nice -n 15 .venv/bin/python bench/llmql_scifact.py \\
        --trained /tmp/llmql-smoke/model --model smollm2-135m --train-max-steps 4 \\
        --max-docs 300 --queries 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.beir import Dataset, read_beir
from pursuit.indexes.protocols import Encoder
from pursuit.indexes.records import Ranking
from pursuit.retrievers.encoders import SentenceTransformerEncoder
from pursuit.retrievers.evaluation.compare import compare
from pursuit.retrievers.llmql.encoder import METADATA_FILE, LLMEncoder
from pursuit.retrievers.llmql.training import LLMQLConfig, train_llmql
from pursuit.retrievers.registry import index_stages

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEASURES = ("nDCG@10", "R@100")


def subset(ds: Dataset, max_docs: int | None, n_queries: int | None) -> Dataset:
    """The first ``n_queries`` queries; every document they judge plus the first
    ``max_docs`` of the corpus (file order)."""
    queries = ds.queries[:n_queries] if n_queries else ds.queries
    qrels = {q.id: ds.qrels[q.id] for q in queries}
    if not max_docs:
        return Dataset(ds.name, ds.corpus, queries, qrels)
    judged = {d for rels in qrels.values() for d in rels}
    keep = {d.id for d in ds.corpus[:max_docs]} | judged
    return Dataset(ds.name, [d for d in ds.corpus if d.id in keep], queries, qrels)


def run_system(name: str, encoder: Encoder, ds: Dataset, tmp: Path) -> tuple[list[Ranking],
                                                                           dict[str, Any]]:
    """Index ``ds.corpus`` with ``encoder``, search every query at depth 100, time both."""
    t = time.perf_counter()
    index = SearchIndex.build(ds.corpus, tmp / name, source=ds.name, encoder=encoder,
                              show_progress=True)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    rankings = index_stages(index, encoder=encoder)["dense"](k=100).batch(ds.queries)
    search_s = time.perf_counter() - t
    index.close()
    return rankings, {"encoder": dict(encoder.describe()), "index_build_s": round(build_s, 1),
                      "docs_per_s": round(len(ds.corpus) / build_s, 1),
                      "search_s": round(search_s, 2)}


def ensure_trained(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """The training record of ``--trained``; trains it here first if it does not exist."""
    folder = Path(args.trained)
    if not (folder / METADATA_FILE).is_file():
        if folder.name != "model":
            raise SystemExit(f"{folder} holds no trained model; train one with pursuit train "
                             "llm-ql --out RUN and pass RUN/model")
        console.print(f"training {args.model or 'qwen2.5-coder-0.5b'} into {folder.parent} (max {args.train_max_steps} "
                      "steps per stage)")
        config = LLMQLConfig(model=args.model or "qwen2.5-coder-0.5b",
                             max_steps=args.train_max_steps,
                             device=args.device)
        train_llmql(config, read_beir(args.data, "train"), folder.parent, show_progress=True,
                    command=shlex.join([sys.executable, *sys.argv]))
    return dict(json.loads((folder / METADATA_FILE).read_text()))


def main() -> None:
    """Run the benchmark; print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--trained", required=True, help="the model/ folder of an LLM-QL run")
    ap.add_argument("--model", default=None, help="base model (default: the one the checkpoint "
                    "was trained from; when training here, qwen2.5-coder-0.5b)")
    ap.add_argument("--train-max-steps", type=int, default=None,
                    help="when training here: cap on each stage's steps")
    ap.add_argument("--dtype", default="bfloat16", help="LLM encoders' dtype")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=16, help="texts per LLM forward pass")
    ap.add_argument("--max-docs", type=int, default=None, help="corpus subset (smoke runs)")
    ap.add_argument("--queries", type=int, default=None, help="first N test queries only")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (on a busy machine 1 can beat 2 by far)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    console = Console()
    training = ensure_trained(args, console)
    base = args.model or training["encoder"]["base_model"]
    ds = subset(read_beir(args.data, "test"), args.max_docs, args.queries)
    load_before = os.getloadavg()
    trained = LLMEncoder(args.trained, dtype=args.dtype, device=args.device,
                         batch_size=args.batch_size)
    encoders: dict[str, Encoder] = {
        "minilm": SentenceTransformerEncoder(),
        "llm-base": LLMEncoder(base, passage_prompt=trained.prompts["passage"],
                               query_prompt=trained.prompts["query"], pooling=trained.pooling,
                               end_token=trained.end_token, max_doc_tokens=trained.max_doc_tokens,
                               max_query_tokens=trained.max_query_tokens, dtype=args.dtype,
                               device=args.device, batch_size=args.batch_size),
        "llm-ql": trained}
    runs: dict[str, list[Ranking]] = {}
    systems: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, encoder in encoders.items():
            console.print(f"[bold]{name}[/]: {encoder.model_id}")
            runs[name], systems[name] = run_system(name, encoder, ds, Path(tmp))
    comparisons = {b: compare(runs, ds, b, measures=MEASURES) for b in ("minilm", "llm-base")}
    for c in comparisons.values():
        console.print(c.to_table(show_p=True))
    smoke = bool(args.max_docs or args.queries)
    result = {
        "dataset": f"{ds.name} test", "n_docs": len(ds.corpus), "n_queries": len(ds.queries),
        "subset": {"max_docs": args.max_docs, "queries": args.queries} if smoke else None,
        "metrics": {n: {m: r.measures[m].mean for m in MEASURES}
                    for n, r in ((row.system, row) for row in comparisons["minilm"].rows)},
        "comparisons": {b: c.to_dict() for b, c in comparisons.items()}, "systems": systems,
        "training": {k: training.get(k) for k in ("command", "train_s", "steps", "pairs",
                                                   "dataset", "device", "config")}
        | {"final_loss": {s: v[-1] for s, v in training.get("losses", {}).items() if v}},
        "bench_command": shlex.join([sys.executable, *sys.argv]),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpus": os.cpu_count(), "threads": args.threads, "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "runtime": runtime()}
    out = ROOT / "bench" / "results" / f"llmql_scifact{'-smoke' if smoke else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
