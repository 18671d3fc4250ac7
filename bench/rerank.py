"""LLM rerankers on BEIR SciFact (test) over BM25 top-k, on the CPU: quality and latency.

For each model in ``--models`` and each reranker in ``--systems`` (ICR, BlockRank, QL,
listwise), reorders BM25's top ``--k`` for ``--queries`` test claims from the ``--start``-th
(0-based; default the first) and reports
nDCG@10 and RR@10 with a paired two-sided t-test against BM25 alone (Holm-corrected over
the rerankers, :func:`pursuit.retrievers.evaluation.compare.compare`). R@10 is not reported: reranking
the top 10 cannot change it.

Latency per query is the wall time of a system's ``batch`` calls divided by the number of
queries (queries go in chunks of ``--chunk`` so progress shows; QL shares prefixes only
within a chunk). Each system first reranks two synthetic documents, untimed, so one-off
kernel set-up is not charged to it; model loading is timed separately and happens once
per model (every reranker of a model shares it through :func:`~pursuit.rerankers.base.cached_lm`).
BlockRank keeps its document-KV cache across queries, as it would in use: a document that is
a candidate of several claims is encoded once. The BM25 time (retrieval and document
fetching) is reported separately. Process CPU time is reported too, because wall time on a
shared machine also counts other processes; so is the load average around each system.
For listwise the row also counts its windows, those whose order the model kept as given,
and those whose output named no passage at all.

The JSON is rewritten after every system, so a killed run keeps what finished; each
system's rankings (and BM25's) are written as TREC runs beside it, in ``<out>-runs/``, so
rows measured in separate runs can be tested together later with
``pursuit compare DATA --run bm25=... --run icr=...``. It ends with
the check of the claim "ICR is at least 3x faster than listwise in the same run".

A model too slow for all 300 claims in one sitting (the 1.5B: about two minutes a claim for
the four systems on two cores) is measured in consecutive slices (``--start 0 --queries 30``,
``--start 30 --queries 30``, ...), which ``bench/rerank_slices.py`` joins into one report.

Run:
    .venv/bin/python bench/rerank.py [--queries 300] [--k 10] [--models qwen2.5-coder-0.5b]
        [--systems icr,blockrank,ql,listwise] [--budget-s 0] [--threads 0] [--start 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.beir import Dataset, read_beir
from pursuit.indexes.datasets.trec import write_run
from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.rerankers.base import cached_lm
from pursuit.rerankers.listwise import WindowStats
from pursuit.rerankers.registry import reranker_stages
from pursuit.retrievers.evaluation.compare import compare
from pursuit.retrievers.evaluation.metrics import evaluate
from pursuit.retrievers.lm.causal import DEFAULT_LLM, canonical_llm_id
from pursuit.retrievers.lm.dtypes import dtype_name
from pursuit.retrievers.registry import index_stages
from pursuit.retrievers.stage import Stage

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("icr", "blockrank", "ql", "listwise")
MEASURES = ("nDCG@10", "RR@10")
#: ICR must be at least this many times faster than listwise (issue 3).
CLAIMED_SPEEDUP = 3.0
_WARMUP_DOCS = {
    "warm-1": Doc("warm-1", "The tide is the rise and fall of sea level caused by the moon.",
                  title="Tides"),
    "warm-2": Doc("warm-2", "Vitamin D is made in the skin when it is exposed to sunlight.",
                  title="Vitamin D"),
}


def warm_up(stage: Stage) -> None:
    """Rerank two synthetic documents (not SciFact's, so BlockRank's cache stays cold)."""
    query = Query("warm-up", "what causes the tides?")
    pool = Ranking.from_scores(query, [("warm-1", 2.0), ("warm-2", 1.0)], pipeline="warm-up",
                               docs=_WARMUP_DOCS)
    stage.transform(query, pool)


def timed_batches(stage: Stage, label: str, queries: list[Query], pools: list[Ranking],
                  chunk: int) -> tuple[list[Ranking], float, float]:
    """``(rankings, wall seconds, process CPU seconds)`` of reranking every pool, chunk by chunk."""
    rankings: list[Ranking] = []
    wall = cpu = 0.0
    for start in range(0, len(queries), chunk):
        w0, c0 = time.perf_counter(), time.process_time()
        rankings += stage.batch(queries[start:start + chunk], pools[start:start + chunk])
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        done = len(rankings)
        eta = wall / done * (len(queries) - done)
        print(f"  {label}: {done}/{len(queries)} queries, {wall / done:.2f} s/query, "
              f"eta {eta / 60:.1f} min, load {os.getloadavg()[0]:.1f}", flush=True)
    return rankings, wall, cpu


def save(out: Path, report: dict[str, Any]) -> None:
    """Write ``report`` atomically, so a kill mid-write leaves the previous version."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(out)


def runs_dir(out: Path) -> Path:
    """Where the TREC runs of the report at ``out`` go: ``<out stem>-runs/`` beside it."""
    return out.with_name(f"{out.stem}-runs")


def speed_check(systems: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    """Listwise over ICR per-query latency for ``model``, when both ran."""
    by = {s["system"]: s for s in systems if s["model"] == model}
    if "icr" not in by or "listwise" not in by:
        return None
    wall = by["listwise"]["s_per_query"] / by["icr"]["s_per_query"]
    cpu = by["listwise"]["cpu_s_per_query"] / by["icr"]["cpu_s_per_query"]
    # Wall time follows the machine's load, which can change between the two systems;
    # process CPU time does not, so the claim is checked on both.
    return {"model": model, "listwise_over_icr_wall": round(wall, 2),
            "listwise_over_icr_cpu": round(cpu, 2), "claimed_at_least": CLAIMED_SPEEDUP,
            "holds_wall": wall >= CLAIMED_SPEEDUP, "holds_cpu": cpu >= CLAIMED_SPEEDUP}


def main() -> None:
    """Run the benchmark; print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "beir-scifact"))
    ap.add_argument("--queries", type=int, default=0,
                    help="N test queries from --start (0: all the rest)")
    ap.add_argument("--start", type=int, default=0,
                    help="0-based position of the first test query (a slice of a longer run)")
    ap.add_argument("--k", type=int, default=10, help="BM25 depth that is reranked")
    ap.add_argument("--models", default="qwen2.5-coder-0.5b",
                    help="comma-separated, e.g. qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--budget-s", type=float, default=0,
                    help="start no new system after this many seconds (0: no budget)")
    ap.add_argument("--chunk", type=int, default=10, help="queries per timed batch call")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "rerank.json"))
    args = ap.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        ap.error(f"unknown system {unknown[0]!r}; choose from {', '.join(SYSTEMS)}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out = Path(args.out)

    full = read_beir(args.data, "test")
    if not 0 <= args.start < len(full.queries):
        ap.error(f"--start {args.start} is outside the {len(full.queries)} test queries")
    end = args.start + args.queries if args.queries else len(full.queries)
    queries = full.queries[args.start:end]
    dataset = Dataset(full.name, full.corpus, queries, full.qrels)
    report: dict[str, Any] = {
        "dataset": f"{full.name} test", "queries": len(queries), "start": args.start,
        "k": args.k,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads()},
        "runtime": runtime(),
        "load_avg_start": os.getloadavg(), "models": {}, "systems": [], "skipped": [],
        "speed_check": [], "complete": False}

    with tempfile.TemporaryDirectory() as tmp:
        index = SearchIndex.build(full.corpus, Path(tmp) / "index", source=args.data)
        bm25 = index_stages(index, fetch_docs=True)["bm25"](k=args.k)
        t0 = time.perf_counter()
        pools = bm25.batch(queries)
        first_s = time.perf_counter() - t0
        base = evaluate(pools, {q.id: full.qrels[q.id] for q in queries if q.id in full.qrels},
                        MEASURES).aggregate
        report["first_stage"] = {"pipeline": bm25.name, "s_total": round(first_s, 3),
                                 "ms_per_query": round(1000 * first_s / len(queries), 3), **base}
        print(f"{bm25.name}: {1000 * first_s / len(queries):.2f} ms/query (retrieval and "
              f"document fetch), " + ", ".join(f"{m} {v:.4f}" for m, v in base.items()),
              flush=True)
        rankings: dict[str, list[Ranking]] = {"bm25": pools}
        runs = runs_dir(out)
        runs.mkdir(parents=True, exist_ok=True)
        report["first_stage"]["run"] = str(write_run(pools, runs / "bm25.trec", tag="bm25"))
        stages = reranker_stages(index.store)

        for model in models:
            for system in systems:
                label = system if len(models) == 1 else f"{system} [{model}]"
                spent = time.perf_counter() - started
                if args.budget_s and spent >= args.budget_s:
                    report["skipped"].append(label)
                    print(f"{label}: skipped, budget of {args.budget_s:g} s spent "
                          f"({spent:.0f} s)", flush=True)
                    continue
                if model not in report["models"]:
                    t0 = time.perf_counter()
                    lm = cached_lm(model)  # every reranker of this model shares the loaded copy
                    report["models"][model] = {"load_s": round(time.perf_counter() - t0, 1),
                                               "dtype": dtype_name(lm.dtype)}
                # The default model is left out of the options so the name reads plainly.
                named = {} if canonical_llm_id(model) == DEFAULT_LLM else {"model": model}
                stage = stages[system](**named)
                warm_up(stage)
                cache = getattr(stage, "cache", None)  # BlockRank's document-KV cache
                hits0, misses0 = (cache.stats.hits, cache.stats.misses) if cache else (0, 0)
                window_stats = getattr(stage, "stats", None)  # listwise: what the model wrote
                if isinstance(window_stats, WindowStats):
                    windows0 = dataclasses.replace(window_stats)  # counts before this system
                load_before = os.getloadavg()[0]
                print(f"{label}: reranking {len(queries)} queries ({stage.name})", flush=True)
                ranked, wall, cpu = timed_batches(stage, label, queries, pools, args.chunk)
                rankings[label] = ranked
                row = {"system": system, "model": model, "label": label, "pipeline": stage.name,
                       "s_per_query": round(wall / len(queries), 3),
                       "cpu_s_per_query": round(cpu / len(queries), 3),
                       "wall_s": round(wall, 1),
                       "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                       **evaluate(ranked, {q.id: full.qrels[q.id] for q in queries
                                           if q.id in full.qrels}, MEASURES).aggregate}
                if cache is not None:  # documents shared between claims are encoded once
                    row["doc_cache"] = {"hits": cache.stats.hits - hits0,
                                        "misses": cache.stats.misses - misses0}
                if isinstance(window_stats, WindowStats):
                    row["windows"] = {"windows": window_stats.windows - windows0.windows,
                                      "kept_order": window_stats.kept - windows0.kept,
                                      "named_none": window_stats.named_none - windows0.named_none}
                row["run"] = str(write_run(ranked, runs / f"{system}-{model}.trec",
                                           tag=f"{system}-{model}"))
                report["systems"].append(row)
                print(f"{label}: {row['s_per_query']:.2f} s/query (cpu "
                      f"{row['cpu_s_per_query']:.2f}), " +
                      ", ".join(f"{m} {row[m]:.4f}" for m in MEASURES), flush=True)
                report["comparison"] = compare(rankings, dataset, "bm25",
                                               measures=MEASURES).to_dict()
                report["elapsed_s"] = round(time.perf_counter() - started, 1)
                save(out, report)
            check = speed_check(report["systems"], model)
            if check is not None:
                report["speed_check"].append(check)
                print(f"{model}: listwise/ICR latency ratio {check['listwise_over_icr_wall']:.2f} "
                      f"wall, {check['listwise_over_icr_cpu']:.2f} cpu; claim ICR >= "
                      f"{CLAIMED_SPEEDUP:g}x faster: wall "
                      f"{'holds' if check['holds_wall'] else 'FAILS'}, cpu "
                      f"{'holds' if check['holds_cpu'] else 'FAILS'}", flush=True)
        index.close()

    if len(rankings) > 1:
        from rich.console import Console

        Console().print(compare(rankings, dataset, "bm25", measures=MEASURES)
                        .to_table(show_p=True))
    if report["skipped"]:
        print(f"skipped (budget): {', '.join(report['skipped'])}")
    report["complete"] = not report["skipped"]
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    report["load_avg_end"] = os.getloadavg()
    save(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
