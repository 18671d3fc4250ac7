"""RealTime QA 2022: BM25, dense and event-aware retrieval of gold news evidence, "as of" each question.

Data: the 16 weekly releases 2022-06-17 .. 2022-09-30 in ``../shared/data/realtimeqa/past/2022``
(459 questions). Corpus: the stored search results of every question, pooled
(:func:`pursuit.indexes.datasets.realtimeqa.pooled_docs`: one document per normalised url, the
latest date when records disagree; 16 of 2,836 have no date and are kept, but they never
pass an "as of" filter, so no system can return them). ``--gold-docs`` adds the gold
articles that have text (otherwise a gold article that no search returned is not in the
corpus). Indexed with BM25 and the packaged all-MiniLM-L6-v2; events are built over it
(``--window-days``, ``--threshold``; fixed beforehand, not tuned here).

"As of": a question dated D is asked at the *end* of day D: every system searches with
``DocFilter(published_before=D + 1 day)`` inside the index search. Publication dates are
whole days, so an article dated D does not postdate the question (10 gold articles are
dated on their question's day) and one dated D + 1 does. Every returned document is
checked: the number dated on or after the bound must be 0, and the script fails otherwise.

Judged questions: those with a gold url (normalised, see ``normalise_url``) in the corpus.
Measures: R@5 and nDCG@10 of the gold articles, paired t-tests against ``dense``
(Holm-corrected). Systems: ``bm25``, ``dense``, ``recency`` (dense + recency bonus, no
events), ``events-fusion`` (event fusion, no recency), ``events`` (both), all treating
every question as time-sensitive (they are weekly news quizzes), and ``events-detected``
(both, only for questions the rule-based detector flags; its rate is reported).

``--train-fusion`` trains :class:`~pursuit.retrievers.events.query_fusion.EventFusion` on the judged
questions of the first half of the weeks (seeded) and adds ``events-trained``; then every
system is evaluated on the second half only.

Writes ``bench/results/realtimeqa.json``.

Run (full, about 5 min on 2 CPU cores, most of it encoding 2,836 documents once):
    nice .venv/bin/python bench/realtimeqa.py
    nice .venv/bin/python bench/realtimeqa.py --train-fusion --out bench/results/realtimeqa-trained.json
Smoke run (two weeks):
    nice -n 15 .venv/bin/python bench/realtimeqa.py --weeks 20220617,20220624 \\
        --index bench/results/realtimeqa-smoke-index --out bench/results/realtimeqa-smoke.json
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.beir import Dataset
from pursuit.indexes.datasets.realtimeqa import (
    RealtimeQuestion,
    load_realtimeqa,
    normalise_url,
    pooled_docs,
)
from pursuit.indexes.events.build import build_event_store, open_event_store
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.manifest import corpus_hash
from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.retrievers.encoders import SentenceTransformerEncoder
from pursuit.retrievers.evaluation.compare import compare
from pursuit.retrievers.events.retriever import EventAwareRetriever
from pursuit.retrievers.events.timesense import detect
from pursuit.retrievers.registry import index_stages
from pursuit.retrievers.stage import Stage

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "realtimeqa" / "past" / "2022"


def as_of(q: RealtimeQuestion) -> datetime:
    """The exclusive bound for question ``q``: the end of its day (00:00 UTC the day after)."""
    return datetime(q.date.year, q.date.month, q.date.day, tzinfo=UTC) + timedelta(days=1)


def open_index(docs: list[Doc], path: Path, source: str, encoder: Any) -> SearchIndex:
    """The index of ``docs`` at ``path``, rebuilt unless it already holds exactly them."""
    if (path / "manifest.json").exists():
        index = SearchIndex.open(path, encoder=encoder)
        if index.manifest.corpus_sha256 == corpus_hash(docs):
            return index
        index.close()
    return SearchIndex.build(docs, path, source=source, encoder=encoder, show_progress=True)


def leaks(rankings: list[Ranking], dates: dict[str, datetime | None]) -> int:
    """Hits published at or after their query's as-of bound (or undated)."""
    bad = 0
    for r in rankings:
        bound = r.query.metadata["filter"].published_before
        bad += sum(1 for h in r if (t := dates[h.doc_id]) is None or t >= bound)
    return bad


def train_module(stage: EventAwareRetriever, index: SearchIndex, encoder: Any,
                 queries: list[Query], qrels: dict[str, dict[str, int]], epochs: int) -> Any:
    """Train an :class:`EventFusion` on ``queries`` (gold vectors, dense hard negatives)."""
    from pursuit.retrievers.events.query_fusion import EventFusion, fusion_batch, train_fusion

    assert index.vectors is not None
    store, raw = stage.events, encoder.encode_query([q.text for q in queries])
    expansions = stage.expand_batch(queries)
    dense = index_stages(index, encoder=encoder)["dense"]() % 8
    rows: list[tuple[Any, ...]] = []
    for q, vec, x, hits in zip(queries, raw, expansions, dense.batch(queries), strict=True):
        gold = sorted(qrels[q.id])[0]
        event = store.event_of.get(gold)
        ended = event is not None and store.event(event).end < x.as_of
        negs = [h.doc_id for h in hits if h.doc_id not in qrels[q.id]][:3]
        rows.append((vec, store.centroids[[e.id for e, _ in x.events]], gold, negs,
                     store.centroids[event] if ended else None))
    vec_of = lambda ids: index.vectors.vectors_of(index.store.rows_of(ids))  # noqa: E731
    batches = [fusion_batch(np.stack([r[0] for r in chunk]), [r[1] for r in chunk],
                            vec_of([r[2] for r in chunk]),
                            vec_of([n for r in chunk for n in r[3]]), [r[4] for r in chunk])
               for chunk in (rows[i:i + 16] for i in range(0, len(rows), 16))]
    module = EventFusion(encoder.dim)
    history = train_fusion(module, batches, epochs=epochs, lr=1e-3, seed=0)
    return module, history


def main() -> None:
    """Run the benchmark; print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--weeks", default=None, help="Comma-separated YYYYMMDD releases (default all).")
    ap.add_argument("--index", default=str(ROOT / "bench" / "results" / "realtimeqa-index"))
    ap.add_argument("--gold-docs", action="store_true", help="Add gold articles to the corpus.")
    ap.add_argument("--window-days", type=float, default=3.0)
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--train-fusion", action="store_true")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "realtimeqa.json"))
    args = ap.parse_args()
    console = Console()

    weeks = args.weeks.split(",") if args.weeks else None
    questions = load_realtimeqa(args.data, weeks)
    docs = pooled_docs(questions, gold=args.gold_docs)
    dates = {d.id: d.published_at for d in docs}
    encoder = SentenceTransformerEncoder()
    started = time.perf_counter()
    index = open_index(docs, Path(args.index), f"realtimeqa:{args.data}", encoder)
    store = build_event_store(index, window_days=args.window_days, threshold=args.threshold)
    build_s = time.perf_counter() - started

    queries, qrels = [], {}
    for q in questions:
        gold = {normalise_url(a.url) for a in q.gold} & dates.keys()
        if gold:
            bound = as_of(q)
            queries.append(Query(q.id, q.sentence, {"as_of": bound.isoformat(),
                                                    "filter": DocFilter(published_before=bound)}))
            qrels[q.id] = dict.fromkeys(sorted(gold), 1)
    stages = index_stages(index, encoder=encoder)
    d = args.depth
    systems: dict[str, Stage] = {
        "bm25": stages["bm25"]() % d, "dense": stages["dense"]() % d,
        "recency": stages["events"](n_events=0, always=True) % d,
        "events-fusion": stages["events"](beta=0.0, always=True) % d,
        "events": stages["events"](always=True) % d, "events-detected": stages["events"]() % d}
    training: dict[str, Any] = {}
    if args.train_fusion:
        all_weeks = sorted({q.week for q in questions})
        train_weeks = set(all_weeks[: len(all_weeks) // 2])
        week_of = {q.id: q.week for q in questions}
        train_q = [q for q in queries if week_of[q.id] in train_weeks]
        queries = [q for q in queries if week_of[q.id] not in train_weeks]
        assert index.vectors is not None
        base = EventAwareRetriever(index.vectors, encoder, index.store, open_event_store(index),
                                   always=True, index_name=str(index.path))
        t0 = time.perf_counter()
        module, history = train_module(base, index, encoder, train_q, qrels, args.epochs)
        trained = EventAwareRetriever(index.vectors, encoder, index.store, base.events,
                                      always=True, fusion=module, index_name=str(index.path),
                                      options={"always": True, "fusion": "trained"})
        systems["events-trained"] = trained % d
        training = {"train_weeks": sorted(train_weeks), "train_questions": len(train_q),
                    "epochs": args.epochs, "loss_per_epoch": history,
                    "seconds": round(time.perf_counter() - t0, 1)}
    judged = {q.id: qrels[q.id] for q in queries}

    rankings, seconds, leak = {}, {}, {}
    for name, system in systems.items():
        t0 = time.perf_counter()
        rankings[name] = system.batch(queries)
        seconds[name] = round(time.perf_counter() - t0, 2)
        leak[name] = leaks(rankings[name], dates)
    assert not any(leak.values()), f"documents published after their question: {leak}"
    dataset = Dataset("realtimeqa-2022", docs, queries, judged)
    result = compare(rankings, dataset, "dense", measures=("R@5", "nDCG@10"))
    console.print(result.to_table(show_p=True))
    if "events-trained" in rankings:  # does training beat the parameter-free fusion?
        pair = {n: rankings[n] for n in ("events", "events-trained")}
        trained_vs_default = compare(pair, dataset, "events", measures=("R@5", "nDCG@10"))
        console.print(trained_vs_default.to_table(show_p=True))
        training["vs_parameter_free"] = trained_vs_default.to_dict()
    ev = systems["events"]
    expansions = ev.expand_batch(queries) if isinstance(ev, EventAwareRetriever) else []
    report = {
        "data": args.data, "weeks": weeks or "all", "questions": len(questions),
        "judged": len(queries), "corpus": len(docs),
        "undated": sum(t is None for t in dates.values()), "gold_docs": args.gold_docs,
        "as_of": "end of question day: published_before = question_date + 1 day (UTC)",
        "events": {"n": len(store), "window_days": args.window_days,
                   "threshold": args.threshold,
                   "expanded_queries": sum(bool(x.events) for x in expansions),
                   "mean_events": float(np.mean([len(x.events) for x in expansions] or [0]))},
        "detector_rate": sum(detect(q.sentence).sensitive for q in questions) / len(questions),
        "leaks": leak, "seconds": seconds, "build_seconds": round(build_s, 1),
        "training": training, "comparison": result.to_dict()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"judged {len(queries)} of {len(questions)} questions; corpus {len(docs)}; "
                  f"{len(store)} events; leaks {leak}; wrote {args.out}")
    index.close()


if __name__ == "__main__":
    main()
