"""InteractComp dev (70 tasks): does asking the user help a model find the entity meant?

Four modes, each task played by :func:`pursuit.agent.evaluation.runs.interact` (one strict JSON
action a turn, validated with :func:`pursuit.agent.llm.structured.structured`):

* ``answer-only``: the model may only answer;
* ``ask``: it may ask up to ``--max-questions`` yes/no questions to a
  :class:`~pursuit.agent.evaluation.simulator.SimulatedUser` that sees the task's hidden context,
  then answers;
* ``search-only``: it may search up to ``--max-searches`` times over a pursuit index
  (``--index DIR``) but not ask, then answers;
* ``full``: as ``ask``, plus the searches of ``search-only``. There is no web corpus
  offline, so without ``--index`` the two searching modes are recorded as skipped, with
  that reason.

Answers are graded three ways: normalised exact match; whether the gold's words occur as
a run in the answer (:func:`pursuit.agent.evaluation.simulator.names_answer`, lenient: an upper bound
on exact match); and a separate judge call (:func:`pursuit.agent.evaluation.simulator.grade_answer`;
``--judge``, default the same model; ``--judge none`` skips the judge and its control, so
``accuracy`` is empty and each task costs only the model under test's calls).
Reported per mode: accuracy (judge), exact-match and names-the-gold accuracy, ask rate
(share of tasks with at least one question), mean questions, mean searches, the simulated
user's unparsed replies, invalid replies and refused actions, seconds and tokens.

The judge is checked on every task with a control: the gold answer of the next task (a
different entity) graded as the prediction must be judged incorrect. The share it accepts
(``judge_false_accept``) says how far to trust the judged accuracy; the packaged 0.5B
accepted every control in the smoke run, so use a stronger judge (``--judge-url``) or
read ``exact_accuracy`` for the small models.

Task text never leaves memory: nothing printed or written holds a question, context or
answer, only task ids, grades and counts. Tasks run in id order.

Writes ``bench/results/interactcomp.json`` after every task and prints a table.

Run (the lead schedules real runs; nice, the machine is shared):
    nice .venv/bin/python bench/interactcomp.py
    nice .venv/bin/python bench/interactcomp.py --modes ask --max-questions 5 \\
        --judge-url http://127.0.0.1:8080/v1 --judge default
    nice .venv/bin/python bench/interactcomp.py --modes full --index DIR
All 70 tasks, answer-only, the default 1.5B, graded without a judge:
    HF_HUB_OFFLINE=1 nice .venv/bin/python bench/interactcomp.py --modes answer-only \\
        --judge none --out bench/results/interactcomp-answer-1.5b.json
Smoke run (two tasks, the 0.5B; about 22 min on a busy 2-core machine, ask mode dominates):
    nice .venv/bin/python bench/interactcomp.py --limit 2 --llm qwen2.5-coder-0.5b \\
        --out bench/results/interactcomp-smoke.json
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pursuit.agent.evaluation.runs import Searcher, grade, index_searcher, interact
from pursuit.agent.evaluation.simulator import SimulatedUser, exact_match, grade_answer
from pursuit.agent.llm.contract import LLMClient, LLMError
from pursuit.agent.llm.local import DEFAULT_PLANNER, load_llm
from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.agent_questions import InteractTask, load_interactcomp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "interactcomp"
MODES = ("answer-only", "ask", "search-only", "full")
ASKS = {"ask", "full"}
SEARCHES = {"search-only", "full"}
NO_INDEX = ("skipped: no web corpus is reachable offline; pass --index DIR with a pursuit "
            "index to search")


def model(name: str | None, url: str | None, cache: dict[tuple[Any, Any], LLMClient]) -> LLMClient:
    """One client per distinct (model, url), so the same model is loaded once."""
    key = (name, url)
    if key not in cache:
        cache[key] = load_llm(name, base_url=url)
    return cache[key]


def redact(text: str, task: InteractTask) -> str:
    """``text`` (an error message, which may echo a request) without any task text: each
    field and each of its sentences or lines of 12+ characters becomes ``[task text]``."""
    pieces = {task.question, task.answer, task.context}
    for field in list(pieces):
        pieces.update(p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", field))
    for piece in sorted((p for p in pieces if len(p) >= 12 or p == task.answer), key=len,
                        reverse=True):
        if piece:
            text = text.replace(piece, "[task text]")
    return text


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over one mode's graded tasks (tasks that hit a model error are counted apart)."""
    ok = [r for r in rows if "error" not in r]
    n = len(ok)

    def avg(key: str) -> float | None:
        kept = [float(r[key]) for r in ok if r.get(key) is not None]
        return math.fsum(kept) / len(kept) if kept else None

    return {"tasks": len(rows), "errors": len(rows) - n, "accuracy": avg("correct"),
            "exact_accuracy": avg("exact"), "names_accuracy": avg("names"),
            "ask_rate": math.fsum(r["questions"] > 0 for r in ok) / n if n else None,
            "mean_questions": avg("questions"), "mean_searches": avg("searches"),
            "user_unparsed": sum(r["unparsed"] for r in ok),
            "invalid_replies": sum(r["invalid"] for r in ok),
            "refused_actions": sum(r["refused"] for r in ok),
            "judge_false_accept": mean_of([r.get("judge_control_accepted") for r in ok]),
            "seconds_mean": avg("seconds"), "tokens_mean": avg("tokens")}


def mean_of(flags: list[bool | None]) -> float | None:
    """The share of ``True`` among the flags that are set (``None``: none set)."""
    kept = [f for f in flags if f is not None]
    return sum(kept) / len(kept) if kept else None


def control_answer(tasks: list[InteractTask], i: int) -> str | None:
    """A known-wrong answer for task ``i``: the next task's gold, unless it matches."""
    other = tasks[(i + 1) % len(tasks)]
    if other.id == tasks[i].id or exact_match(other.answer, tasks[i].answer):
        return None
    return other.answer


ROWS = (("tasks", "tasks", 0), ("model errors", "errors", 0), ("accuracy (judge)", "accuracy", 3),
        ("accuracy (exact match)", "exact_accuracy", 3),
        ("accuracy (names the gold)", "names_accuracy", 3), ("ask rate", "ask_rate", 3),
        ("questions / task", "mean_questions", 2), ("searches / task", "mean_searches", 2),
        ("user replies unparsed", "user_unparsed", 0), ("invalid replies", "invalid_replies", 0),
        ("refused actions", "refused_actions", 0), ("judge false accepts", "judge_false_accept", 3),
        ("seconds / task", "seconds_mean", 1), ("tokens / task", "tokens_mean", 0))


def show(console: Console, result: dict[str, Any]) -> None:
    """Print one column per mode that ran (skipped modes below the table)."""
    ran = {m: s for m, s in result["modes"].items() if "skipped" not in s}
    table = Table(title=f"InteractComp dev ({result['llm']}, judge {result['judge']})")
    table.add_column("measure")
    for mode in ran:
        table.add_column(mode, justify="right")
    for label, key, digits in ROWS:
        table.add_row(label, *["-" if s[key] is None else f"{s[key]:.{digits}f}"
                               for s in ran.values()])
    console.print(table)
    for mode, s in result["modes"].items():
        if mode not in ran:
            console.print(f"{mode}: {s['skipped']}", highlight=False)


def main() -> None:
    """Run the benchmark; print and save its numbers (ids and grades only)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES))
    ap.add_argument("--max-questions", type=int, default=5)
    ap.add_argument("--max-searches", type=int, default=5)
    ap.add_argument("--llm", default=None, help=f"model under test (default {DEFAULT_PLANNER})")
    ap.add_argument("--llm-url", default=None)
    ap.add_argument("--user-llm", default=None, help="simulated user's model (default --llm)")
    ap.add_argument("--user-llm-url", default=None)
    ap.add_argument("--judge", default=None,
                    help="judge model (default --llm); 'none' grades without a judge")
    ap.add_argument("--judge-url", default=None)
    ap.add_argument("--index", type=Path, default=None,
                    help="pursuit index for the search-only and full modes")
    ap.add_argument("--limit", type=int, default=None, help="first N tasks by id")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "interactcomp.json")
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode {unknown[0]!r}; use {', '.join(MODES)}")
    console = Console()

    started = time.perf_counter()
    tasks = sorted(load_interactcomp(args.data), key=lambda t: int(t.id))[: args.limit]
    cache: dict[tuple[Any, Any], LLMClient] = {}
    llm = model(args.llm, args.llm_url, cache)
    user_llm = model(args.user_llm or args.llm, args.user_llm_url or args.llm_url, cache)
    judge = (None if args.judge == "none"
             else model(args.judge or args.llm, args.judge_url or args.llm_url, cache))
    search: Searcher | None = None
    if SEARCHES & set(modes) and args.index is not None:
        search = index_searcher(SearchIndex.open(args.index))
    result: dict[str, Any] = {
        "llm": llm.name, "user_llm": user_llm.name, "judge": judge.name if judge else None,
        "max_questions": args.max_questions, "max_searches": args.max_searches,
        "index": str(args.index) if args.index else None, "runtime": runtime(),
        "modes": {}, "tasks": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    controls: dict[str, bool | None] = {}  # judge verdict on a known-wrong answer, per task
    for mode in modes:
        if mode in SEARCHES and search is None:
            result["modes"][mode] = {"skipped": NO_INDEX}
            continue
        rows: list[dict[str, Any]] = result["tasks"].setdefault(mode, [])
        for i, task in enumerate(tasks, start=1):
            row: dict[str, Any] = {"id": task.id}
            simulated = SimulatedUser(user_llm, task.context) if mode in ASKS else None
            try:
                run = interact(llm, task.question, simulated=simulated,
                               search=search if mode in SEARCHES else None,
                               max_questions=args.max_questions,
                               max_searches=args.max_searches)
                row.update(run.to_dict())
                row["unparsed"] = simulated.unparsed if simulated else 0
                row.update(grade(judge, task.question, task.answer, run.answer))
                if judge is not None and task.id not in controls:
                    wrong = control_answer(tasks, i - 1)
                    controls[task.id] = None if wrong is None else grade_answer(
                        judge, task.question, task.answer, wrong)
                row["judge_control_accepted"] = controls.get(task.id)
            except LLMError as exc:
                row["error"] = redact(str(exc), task)[:300]
            rows.append(row)
            result["modes"][mode] = summarise(rows)
            args.out.write_text(json.dumps(result, indent=2))
            status = row.get("error") or (f"correct={row['correct']} exact={row['exact']} "
                                          f"names={row['names']} "
                                          f"questions={row['questions']} stop={row['stop']}")
            console.print(f"{mode} [{i}/{len(tasks)}] task {task.id}: {status}", highlight=False)
    show(console, result)
    console.print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
