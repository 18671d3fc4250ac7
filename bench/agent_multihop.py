"""MultiHop-RAG dev: the agent against single-shot hybrid retrieval on the same queries.

The corpus (609 news articles, whole articles as documents, ids = article urls so they
match the evidence urls) is indexed once with BM25 and the packaged all-MiniLM-L6-v2.

1. **Hybrid over all 852 dev queries**: ``0.5*bm25%100 + 0.5*dense%100`` of the query,
   evidence recall@5/@10 (null queries have no evidence and are left out).
2. **A stratified subset** (``--per-type N`` queries of each type inference / comparison /
   temporal / null_query, drawn with a fixed seed, run round-robin over the types so a
   killed run keeps every type). For each query the agent runs unattended
   (``AgentConfig(clarify=False)``, rerank ``--rerank``, no as-of date) and we report:

   * evidence recall@5/@10 of the distinct articles it gathered, ordered as
     :func:`pursuit.agent.evaluation.runs.gathered_docs` documents (cited articles first, then
     sub-questions in plan order with passages in rank order), against hybrid's top-k on
     the same queries: paired mean difference, wins/ties/losses, paired t-test;
   * answer accuracy per question type by normalised containment
     (:func:`pursuit.agent.evaluation.runs.contains_answer`: the short gold answer occurs as a
     whole-word run in the agent's answer; yes/no also needs the opposite word absent;
     "Insufficient information." needs an answer that opens by abstaining), and how often
     the agent abstained on a question that has an answer;
   * ISR (evidence recall over everything gathered), ISE (evidence articles / actions,
     actions = searches + questions asked), wall seconds and tokens per question.

Writes ``bench/results/agent_multihop.json`` after every question (a killed run keeps what
finished) and prints a table.

Run (the lead schedules real runs; nice, the machine is shared):
    nice .venv/bin/python bench/agent_multihop.py --per-type 5
    nice .venv/bin/python bench/agent_multihop.py --per-type 5 --rerank none
    nice .venv/bin/python bench/agent_multihop.py --llm-url http://127.0.0.1:8080/v1 --llm default
In slices (questions 0-11, then 12 onwards of the same draw), joined into one report:
    nice .venv/bin/python bench/agent_multihop.py --per-type 5 --limit 12 --out A.json
    nice .venv/bin/python bench/agent_multihop.py --per-type 5 --start 12 --out B.json
    nice .venv/bin/python bench/agent_multihop.py --join A.json B.json --out AB.json
Smoke run (two questions, the 0.5B with ICR; about 20 min on a busy 2-core machine, the
first run also builds the index and runs hybrid over all 852 queries, about 100 s):
    nice .venv/bin/python bench/agent_multihop.py --per-type 1 --limit 2 \\
        --llm qwen2.5-coder-0.5b --out bench/results/agent_multihop-smoke.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from scipy.stats import ttest_rel

from pursuit.agent.config import AgentConfig
from pursuit.agent.coverage import abstains, is_gap
from pursuit.agent.evaluation.runs import contains_answer, run_question
from pursuit.agent.evaluation.seeking import evidence_recall_at_k, ise, isr
from pursuit.agent.factory import build_agent
from pursuit.agent.llm.contract import LLMError
from pursuit.agent.llm.local import DEFAULT_PLANNER, load_llm
from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.agent_questions import (
    MULTIHOP_TYPES,
    MultihopQuery,
    load_multihop_queries,
)
from pursuit.indexes.protocols import Encoder
from pursuit.indexes.records import Query
from pursuit.indexes.sources.corpus import load_corpus
from pursuit.retrievers.encoders import SentenceTransformerEncoder
from pursuit.retrievers.pipeline_parser import parse_pipeline
from pursuit.retrievers.registry import index_stages

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from runtime import runtime  # noqa: E402
from slices import consecutive  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "multihop-rag"
HYBRID = "0.5*bm25%100 + 0.5*dense%100"
KS = (5, 10)


def open_index(data: Path, path: Path, encoder: Encoder, console: Console) -> SearchIndex:
    """The corpus index at ``path``, built there first when it has no manifest."""
    if (path / "manifest.json").exists():
        return SearchIndex.open(path, encoder=encoder)
    console.print(f"indexing {data / 'corpus.json'} into {path} (once)")
    _, docs = load_corpus(data / "corpus.json", fields={"preset": "multihop-rag"})
    return SearchIndex.build(docs, path, source=str(data / "corpus.json"), encoder=encoder,
                             show_progress=True)


def stratified(queries: Sequence[MultihopQuery], per_type: int, seed: int) -> list[MultihopQuery]:
    """``per_type`` queries of each type (seeded draw), interleaved type by type."""
    rng = random.Random(seed)
    drawn = []
    for qtype in MULTIHOP_TYPES:
        pool = [q for q in queries if q.question_type == qtype]
        drawn.append(sorted(rng.sample(pool, min(per_type, len(pool))), key=lambda q: int(q.id)))
    return [group[i] for i in range(per_type) for group in drawn if i < len(group)]


def mean(values: Sequence[float]) -> float | None:
    """Mean of the defined (non-nan) values, ``None`` when there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else None


def recall_table(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Agent vs hybrid recall@k, paired over the rows with evidence."""
    pairs = [(r[f"agent_r@{k}"], r[f"hybrid_r@{k}"]) for r in rows
             if not math.isnan(r[f"agent_r@{k}"])]
    out: dict[str, Any] = {"n": len(pairs)}
    if not pairs:
        return out
    agent, hybrid = [a for a, _ in pairs], [h for _, h in pairs]
    diff = [a - h for a, h in pairs]
    p = None
    if len(pairs) > 1 and any(diff):
        p = float(ttest_rel(agent, hybrid).pvalue)
    return {**out, "agent": mean(agent), "hybrid": mean(hybrid), "diff": mean(diff),
            "wins": sum(d > 0 for d in diff), "ties": sum(d == 0 for d in diff),
            "losses": sum(d < 0 for d in diff), "p_paired_t": p}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the finished questions (errors left out and counted)."""
    ok = [r for r in rows if "error" not in r]
    by_type = {}
    for qtype in MULTIHOP_TYPES:
        typed = [r for r in ok if r["type"] == qtype]
        by_type[qtype] = {"n": len(typed), "accuracy": mean([float(r["correct"]) for r in typed])}
    answerable = [r for r in ok if r["type"] != "null_query" and "abstained" in r]
    subs = [a for r in ok for a in r.get("sub_answers", [])]
    bare = [a for a in subs if a.get("bare_citation")]
    return {"questions": len(rows), "errors": len(rows) - len(ok),
            "sub_answers": {"n": len(subs), "gaps": sum(is_gap(a["answer"]) for a in subs),
                            "bare_citation": len(bare),
                            "still_bare": sum(is_gap(a["answer"]) for a in bare)},
            "accuracy": mean([float(r["correct"]) for r in ok]), "accuracy_by_type": by_type,
            "abstained_answerable": mean([float(r["abstained"]) for r in answerable]),
            **{f"recall@{k}": recall_table(ok, k) for k in KS},
            "isr": mean([r["isr"] for r in ok]), "ise": mean([r["ise"] for r in ok]),
            "actions": mean([float(r["actions"]) for r in ok]),
            "seconds_mean": mean([r["seconds"] for r in ok]),
            "seconds_median": statistics.median([r["seconds"] for r in ok]) if ok else None,
            "tokens_mean": mean([float(r["tokens"]) for r in ok])}


def with_nan(row: dict[str, Any]) -> dict[str, Any]:
    """A question row read back from JSON: the undefined measures (``null`` there) are nan
    again, as :func:`summarise` expects."""
    measures = {"isr", "ise", *(f"{who}_r@{k}" for who in ("agent", "hybrid") for k in KS)}
    return {k: math.nan if k in measures and v is None else v for k, v in row.items()}


SAME = ("llm", "config", "per_type", "seed", "types", "hybrid_all")


def join(slices: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One report from slices of the same draw (``--start``): their questions in slice
    order, summarised again.

    Args:
        slices: ``(label, result)`` pairs in any order; the label (the file) names a slice
            in errors.

    Raises:
        ValueError: No slices, slices that differ in a setting (model, config, draw, types,
            hybrid run), leave a gap or overlap, or a question that appears twice.
    """
    labelled, _ = consecutive(slices, same=SAME, length=lambda r: len(r["questions"]),
                              unit="question", start=0)
    ordered = [r for _, r in labelled]
    first = ordered[0]
    questions = [with_nan(q) for r in ordered for q in r["questions"]]
    ids = [q["id"] for q in questions]
    if len(set(ids)) != len(ids):
        raise ValueError(f"question {next(i for i in ids if ids.count(i) > 1)} is in two slices")
    return {**{k: first.get(k) for k in SAME}, "start": 0,
            "accuracy_rule": first.get("accuracy_rule"),
            "gathered_order": first.get("gathered_order"),
            "slices": [{"start": r.get("start", 0), "questions": len(r["questions"])}
                       for r in ordered],
            "questions": questions, "summary": summarise(questions)}


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for the table ("-" when undefined)."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def no_nan(obj: Any) -> Any:
    """``obj`` with every nan replaced by ``None`` (JSON has no nan; undefined is null)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [no_nan(v) for v in obj]
    return obj


def show(console: Console, result: dict[str, Any]) -> None:
    """Print the summary table."""
    s, full = result["summary"], result["hybrid_all"]
    console.print(f"hybrid over all {full['queries']} dev queries ({full['with_evidence']} with "
                  f"evidence): R@5 {fmt(full['recall@5'])}  R@10 {fmt(full['recall@10'])}")
    table = Table(title=f"MultiHop-RAG dev subset: agent vs hybrid ({s['questions']} questions, "
                        f"{s['errors']} errors)")
    for col in ("measure", "agent", "hybrid", "diff", "W/T/L", "p", "n"):
        table.add_column(col)
    for k in KS:
        r = s[f"recall@{k}"]
        if r["n"]:
            table.add_row(f"evidence R@{k}", fmt(r["agent"]), fmt(r["hybrid"]), fmt(r["diff"]),
                          f"{r['wins']}/{r['ties']}/{r['losses']}", fmt(r["p_paired_t"]),
                          str(r["n"]))
    for qtype, t in s["accuracy_by_type"].items():
        table.add_row(f"accuracy {qtype}", fmt(t["accuracy"]), "", "", "", "", str(t["n"]))
    table.add_row("accuracy (all)", fmt(s["accuracy"]), "", "", "", "",
                  str(s["questions"] - s["errors"]))
    table.add_row("abstained, answerable", fmt(s.get("abstained_answerable")), "", "", "", "", "")
    subs = s["sub_answers"]
    table.add_row("sub-answers: gaps / bare citations / still gaps",
                  f"{subs['gaps']} / {subs['bare_citation']} / {subs['still_bare']}",
                  "", "", "", "", str(subs["n"]))
    for name, key, digits in (("ISR", "isr", 3), ("ISE", "ise", 3), ("actions", "actions", 1),
                              ("seconds (mean)", "seconds_mean", 1),
                              ("seconds (median)", "seconds_median", 1),
                              ("tokens (mean)", "tokens_mean", 0)):
        table.add_row(name, fmt(s[key], digits), "", "", "", "", "")
    console.print(table)


def main() -> None:
    """Run the benchmark; print and save its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--index", type=Path, default=ROOT / "bench" / "results" / "multihop-index")
    ap.add_argument("--per-type", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0,
                    help="skip this many questions of the draw (run a later slice)")
    ap.add_argument("--limit", type=int, default=None, help="stop after this many questions")
    ap.add_argument("--types", default=",".join(MULTIHOP_TYPES),
                    help="comma-separated question types to run (default: all four)")
    ap.add_argument("--llm", default=None, help=f"agent model (default {DEFAULT_PLANNER}; with "
                    "--llm-url, the served model name)")
    ap.add_argument("--llm-url", default=None, help="OpenAI-compatible API root")
    ap.add_argument("--rerank", default="icr", help="reranker pipeline text, or 'none'")
    ap.add_argument("--join", type=Path, nargs="+", default=None, metavar="RESULT",
                    help="join the result files of consecutive slices into --out; run nothing")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "agent_multihop.json")
    args = ap.parse_args()
    console = Console()
    if args.join:
        try:
            joined = join([(str(f), json.loads(f.read_text())) for f in args.join])
        except (OSError, ValueError, KeyError) as exc:
            ap.error(f"cannot join {', '.join(map(str, args.join))}: {exc}")
        args.out.write_text(json.dumps(no_nan(joined), indent=2))
        show(console, joined)
        console.print(f"wrote {args.out}")
        return

    started = time.perf_counter()
    encoder = SentenceTransformerEncoder()
    index = open_index(args.data, args.index, encoder, console)
    queries = load_multihop_queries(args.data)
    stage = parse_pipeline(HYBRID, index_stages(index, encoder=encoder))
    rankings = {q.id: r.doc_ids() for q, r in
                zip(queries, stage.batch([Query(q.id, q.query) for q in queries]), strict=True)}
    gold = {q.id: [e.url for e in q.evidence] for q in queries}
    full = {"queries": len(queries), "with_evidence": sum(1 for q in queries if q.evidence),
            "pipeline": HYBRID}
    for k in KS:
        full[f"recall@{k}"] = mean([evidence_recall_at_k(gold[q.id], rankings[q.id], k)
                                    for q in queries])
    console.print(f"index and hybrid run over {len(queries)} queries: "
                  f"{time.perf_counter() - started:.0f} s")

    types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = sorted(set(types) - set(MULTIHOP_TYPES))
    if unknown:
        ap.error(f"unknown --types {', '.join(unknown)}; choose from {', '.join(MULTIHOP_TYPES)}")
    subset = [q for q in stratified(queries, args.per_type, args.seed)
              if q.question_type in types][args.start:][: args.limit]
    llm = load_llm(args.llm, base_url=args.llm_url)
    rerank = None if args.rerank.lower() == "none" else args.rerank
    config = AgentConfig(clarify=False, rerank=rerank)
    session = build_agent(index, llm=llm, config=config, clarifier=None)
    result: dict[str, Any] = {
        "llm": llm.name, "config": config.to_dict(), "per_type": args.per_type,
        "runtime": runtime(getattr(getattr(llm, "lm", None), "dtype", None)),
        "seed": args.seed, "start": args.start, "types": types, "hybrid_all": full,
        "questions": [], "summary": {},
        "accuracy_rule": "normalised whole-word containment of the gold answer "
                         "(pursuit.agent.evaluation.runs.contains_answer)",
        "gathered_order": "cited first, then sub-questions in plan order, passages by rank"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for i, q in enumerate(subset, start=1):
        row: dict[str, Any] = {"id": q.id, "type": q.question_type, "gold": q.answer}
        required = set(gold[q.id])
        for k in KS:
            row[f"hybrid_r@{k}"] = evidence_recall_at_k(required, rankings[q.id], k)
        try:
            run = run_question(session, q.query, thread_id=f"multihop-{q.id}")
        except LLMError as exc:
            row["error"] = str(exc)
        else:
            gathered = list(run.gathered)
            row.update({f"agent_r@{k}": evidence_recall_at_k(required, gathered, k) for k in KS})
            row.update({"correct": contains_answer(q.answer, run.answer),
                        "abstained": abstains(run.answer), "gaps": list(run.gaps),
                        "sub_answers": list(run.sub_answers),
                        "isr": isr(required, set(gathered)), "ise": ise(required, run.actions),
                        "answer": run.answer, "gathered": gathered[:10],
                        "evidence": sorted(required), "searches": run.searches,
                        "actions": run.actions, "sub_questions": run.sub_questions,
                        "seconds": run.seconds, "tokens": run.tokens, "timings": run.timings})
        result["questions"].append(row)
        result["summary"] = summarise(result["questions"])
        args.out.write_text(json.dumps(no_nan(result), indent=2))
        status = row.get("error") or (f"correct={row['correct']} R@10 agent "
                                      f"{fmt(row['agent_r@10'], 2)} hybrid "
                                      f"{fmt(row['hybrid_r@10'], 2)} {row['seconds']:.0f} s")
        console.print(f"[{i}/{len(subset)}] {q.id} {q.question_type}: {status}", highlight=False)
    show(console, result)
    console.print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
