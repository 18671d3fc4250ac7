"""MultiHop-RAG temporal queries: evidence recall with and without event awareness.

The dev third's ``temporal`` queries (198; e.g. "After the TechCrunch report on October 7,
2023, ... and the article on October 30, 2023, ...") against the 609-article corpus
(whole articles, ids = urls = the evidence urls; read with ``MULTIHOP_RAG_FIELDS``),
indexed with BM25 and the packaged all-MiniLM-L6-v2, events built over it (``--window-days``,
``--threshold``, fixed beforehand). The queries have no "as of" date, so retrieval is live:
the newest event's time plays "now".

Systems: ``bm25``, ``dense``, and the event-aware stage as ``events`` (the rule-based
detector decides which queries are expanded; events come from the last ``horizon_days``
or from within ``around_days`` of a date the query names; a query naming dates gets no
recency bonus), ``events-always`` (every query expanded), ``events-fusion`` (no recency
at all) and ``events-noanchor`` (no date anchoring); ``hybrid`` (the agent's first stage,
``0.5*bm25 + 0.5*dense``) and ``hybrid-events`` (the same with ``events`` in place of
``dense``), also tested against each other. Measures: evidence recall@5 and
@10 (``R@5``, ``R@10``: the share of a query's evidence articles in the top k), paired
t-tests against ``dense`` (Holm-corrected).

The index goes to ``--index`` (default ``bench/results/multihop-events-index``): copied from
``bench/results/multihop-index`` when that holds the same corpus (no re-encoding), built
otherwise. Writes ``bench/results/multihop_events.json``.

Run (full, about 1 min when the index can be copied, 4 min when it is built):
    nice .venv/bin/python bench/multihop_events.py
Smoke run (20 queries):
    nice -n 15 .venv/bin/python bench/multihop_events.py --limit 20 \\
        --out bench/results/multihop_events-smoke.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from rich.console import Console

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.agent_questions import load_multihop_queries
from pursuit.indexes.datasets.beir import Dataset
from pursuit.indexes.events.build import build_event_store
from pursuit.indexes.manifest import corpus_hash
from pursuit.indexes.records import Query
from pursuit.indexes.sources.jsonrecords import MULTIHOP_RAG_FIELDS, read_records
from pursuit.retrievers.encoders import SentenceTransformerEncoder
from pursuit.retrievers.evaluation.compare import compare
from pursuit.retrievers.events.retriever import EventAwareRetriever
from pursuit.retrievers.events.timesense import detect, mentioned_dates
from pursuit.retrievers.registry import index_stages
from pursuit.retrievers.stage import Stage

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "multihop-rag"
RESULTS = ROOT / "bench" / "results"


def open_index(data: Path, path: Path, shared: Path, encoder: SentenceTransformerEncoder,
               console: Console) -> SearchIndex:
    """The corpus index at ``path``: kept, copied from ``shared``, or built, in that order."""
    docs = list(read_records(data / "corpus.json", fields=MULTIHOP_RAG_FIELDS))
    want = corpus_hash(docs)
    for candidate in (path, shared):
        if not (candidate / "manifest.json").exists():
            continue
        with SearchIndex.open(candidate) as found:
            same = (found.manifest.corpus_sha256 == want and found.encoder_config is not None
                    and found.encoder_config["model_id"] == encoder.model_id)
        if same:
            if candidate != path:
                console.print(f"copying {candidate} to {path}")
                shutil.rmtree(path, ignore_errors=True)
                shutil.copytree(candidate, path, ignore=shutil.ignore_patterns("events"))
            return SearchIndex.open(path, encoder=encoder)
    return SearchIndex.build(docs, path, source=str(data / "corpus.json"), encoder=encoder,
                             show_progress=True)


def main() -> None:
    """Run the benchmark; print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--index", default=str(RESULTS / "multihop-events-index"))
    ap.add_argument("--shared-index", default=str(RESULTS / "multihop-index"))
    ap.add_argument("--window-days", type=float, default=3.0)
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--horizon-days", type=float, default=7.0)
    ap.add_argument("--limit", type=int, default=None, help="First N temporal queries only.")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--out", default=str(RESULTS / "multihop_events.json"))
    args = ap.parse_args()
    console = Console()

    temporal = [q for q in load_multihop_queries(Path(args.data)) if q.question_type == "temporal"]
    temporal = temporal[: args.limit] if args.limit else temporal
    encoder = SentenceTransformerEncoder()
    started = time.perf_counter()
    index = open_index(Path(args.data), Path(args.index), Path(args.shared_index), encoder,
                       console)
    store = build_event_store(index, window_days=args.window_days, threshold=args.threshold)
    build_s = time.perf_counter() - started

    queries = [Query(q.id, q.query) for q in temporal]
    qrels = {q.id: {e.url: 1 for e in q.evidence} for q in temporal if q.evidence}
    stages = index_stages(index, encoder=encoder)
    ev, d, h = stages["events"], args.depth, args.horizon_days
    systems: dict[str, Stage] = {
        "bm25": stages["bm25"]() % d, "dense": stages["dense"]() % d,
        "events": ev(horizon_days=h) % d, "events-always": ev(horizon_days=h, always=True) % d,
        "events-fusion": ev(horizon_days=h, beta=0.0) % d,
        "events-noanchor": ev(horizon_days=h, around_days=-1.0) % d,
        # the agent's first stage (agent.searcher.SearchTools) with and without events
        "hybrid": 0.5 * (stages["bm25"]() % d) + 0.5 * (stages["dense"]() % d),
        "hybrid-events": 0.5 * (stages["bm25"]() % d) + 0.5 * (ev(horizon_days=h) % d)}
    rankings, seconds = {}, {}
    for name, system in systems.items():
        t0 = time.perf_counter()
        rankings[name] = system.batch(queries)
        seconds[name] = round(time.perf_counter() - t0, 2)
    dataset = Dataset("multihop-rag-temporal", [], queries, qrels)
    result = compare(rankings, dataset, "dense", measures=("R@5", "R@10"))
    console.print(result.to_table(show_p=True))
    pair = {n: rankings[n] for n in ("hybrid", "hybrid-events")}
    in_hybrid = compare(pair, dataset, "hybrid", measures=("R@5", "R@10"))
    console.print(in_hybrid.to_table(show_p=True))
    main_stage = systems["events"]
    expansions = (main_stage.expand_batch(queries)
                  if isinstance(main_stage, EventAwareRetriever) else [])
    report = {
        "data": args.data, "queries": len(queries), "judged": len(qrels),
        "events": {"n": len(store), "window_days": args.window_days,
                   "threshold": args.threshold, "horizon_days": h,
                   "largest": max((len(e.members) for e in store.events()), default=0),
                   "expanded_queries": sum(bool(x.events) for x in expansions)},
        "detected": sum(detect(q.text).sensitive for q in queries),
        "naming_dates": sum(bool(mentioned_dates(q.text)) for q in queries),
        "seconds": seconds, "build_seconds": round(build_s, 1),
        "comparison": result.to_dict(), "events_in_hybrid": in_hybrid.to_dict()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"{len(queries)} temporal queries; {len(store)} events; "
                  f"{report['events']['expanded_queries']} expanded; wrote {args.out}")
    index.close()


if __name__ == "__main__":
    main()
