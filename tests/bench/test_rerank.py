"""The model-free helpers of bench/rerank.py and bench/rerank_scaling.py."""

from __future__ import annotations

import importlib.util
import json
import mmap
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    """Import a bench script (bench/ is not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_check_ratio_of_listwise_over_icr() -> None:
    rerank = load("rerank")
    rows = [{"system": "icr", "model": "m", "s_per_query": 2.0, "cpu_s_per_query": 4.0},
            {"system": "listwise", "model": "m", "s_per_query": 5.0, "cpu_s_per_query": 14.0},
            {"system": "icr", "model": "other", "s_per_query": 1.0, "cpu_s_per_query": 1.0}]
    assert rerank.speed_check(rows, "m") == {
        "model": "m", "listwise_over_icr_wall": 2.5, "listwise_over_icr_cpu": 3.5,
        "claimed_at_least": 3.0, "holds_wall": False, "holds_cpu": True}
    rows[1]["s_per_query"] = 6.0
    assert rerank.speed_check(rows, "m")["holds_wall"] is True
    assert rerank.speed_check(rows, "other") is None  # listwise did not run for it


def test_save_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    rerank = load("rerank")
    out = tmp_path / "results" / "rerank.json"
    rerank.save(out, {"systems": [1]})
    rerank.save(out, {"systems": [1, 2]})
    assert json.loads(out.read_text()) == {"systems": [1, 2]}
    assert sorted(p.name for p in out.parent.iterdir()) == ["rerank.json"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_rise_sees_a_64_mib_allocation_freed_before_it_returns() -> None:
    scaling = load("rerank_scaling")

    def allocate(mib: int) -> int:
        # A fresh anonymous mapping, written page by page: resident memory the allocator
        # cannot serve from pages it kept after an earlier free.
        with mmap.mmap(-1, mib * 2**20) as block:
            for offset in range(0, len(block), mmap.PAGESIZE):
                block[offset] = 1
            return len(block)

    seconds, rise, method = scaling.peak_rise(lambda: allocate(64))
    assert method == "VmHWM reset via clear_refs"
    assert 63 * 2**20 <= rise <= 72 * 2**20
    assert seconds >= 0
    # The high-water mark was reset: a second, smaller allocation is not hidden by the first.
    _, rise_small, _ = scaling.peak_rise(lambda: allocate(16))
    assert 15 * 2**20 <= rise_small <= 24 * 2**20


def _report(systems: dict[str, float], bm25: float = 0.5) -> dict:  # type: ignore[type-arg]
    """A rerank.py report with one row per system and its raw nDCG@10 / RR@10 p-value."""
    return {"dataset": "beir-scifact test", "queries": 300, "k": 10,
            "first_stage": {"nDCG@10": bm25, "RR@10": 0.4, "ms_per_query": 0.2},
            "systems": [{"system": s, "model": "m", "label": s, "nDCG@10": 0.6, "RR@10": 0.5,
                         "s_per_query": 1.0, "cpu_s_per_query": 2.0} for s in systems],
            "comparison": {"rows": [{"system": s, "measures": {
                m: {"p": p, "wins": 1, "ties": 2, "losses": 3} for m in ("nDCG@10", "RR@10")}}
                for s, p in systems.items()]}}


def test_rerank_table_applies_holm_across_separate_runs() -> None:
    table = load("rerank_table").merge([_report({"icr": 0.01}), _report({"ql": 0.04,
                                                                          "listwise": 0.5})])
    got = {r["system"]: r["tests"]["nDCG@10"]["p_holm_all"] for r in table["rows"]}
    # Holm over three: 0.01 * 3, then max(0.03, 0.04 * 2), then max(0.08, 0.5 * 1)
    assert got == pytest.approx({"icr": 0.03, "ql": 0.08, "listwise": 0.5})


@pytest.mark.parametrize(("other", "message"), [
    (_report({"ql": 0.1}, bm25=0.51), "runs have different BM25 nDCG@10: 0.5 vs 0.51"),
    (_report({"icr": 0.1}), "icr with m appears in two runs; leave the superseded one out"),
    ({**_report({"ql": 0.1}), "queries": 40}, "runs differ in queries: 300 vs 40"),
    ({**_report({"ql": 0.1}), "start": 30}, "runs differ in start: 0 vs 30"),
])
def test_rerank_table_refuses_runs_that_do_not_match(other: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        load("rerank_table").merge([_report({"icr": 0.01}), other])


def test_rerank_table_drops_a_superseded_row_before_holm() -> None:
    old = _report({"blockrank": 1e-40, "ql": 0.04})
    table = load("rerank_table").merge([old, _report({"blockrank": 0.02})], drop={(0, "blockrank")})
    got = {r["system"]: r["tests"]["nDCG@10"]["p_holm_all"] for r in table["rows"]}
    assert got == pytest.approx({"ql": 0.04, "blockrank": 0.04})  # Holm over two rows
    assert table["dropped"] == [{"run": 1, "system": "blockrank"}]
    with pytest.raises(ValueError, match="run 2 has no ql row to drop"):
        load("rerank_table").merge([old, _report({"blockrank": 0.02})], drop={(1, "ql")})


def _slice(tmp: Path, name: str, start: int, qids: list[str],
           order: dict[str, list[str]], systems: dict[str, list[str]]) -> tuple[Path, dict]:  # type: ignore[type-arg]
    """A rerank.py slice report at ``tmp/name.json`` with real TREC runs beside it.

    ``order`` is BM25's ranking per query; ``systems`` maps a system to the queries it
    reverses (it keeps BM25's order elsewhere).
    """
    from pursuit.indexes.datasets.trec import write_run
    from pursuit.indexes.records import Query, Ranking

    def ranking(qid: str, ids: list[str], pipeline: str) -> Ranking:
        return Ranking.from_scores(Query(qid, ""), [(d, float(len(ids) - i))
                                                    for i, d in enumerate(ids)], pipeline=pipeline)

    runs = tmp / f"{name}-runs"
    runs.mkdir(parents=True, exist_ok=True)
    bm25 = [ranking(q, order[q], "bm25") for q in qids]
    report = {"dataset": "toy test", "queries": len(qids), "start": start, "k": 3,
              "first_stage": {"pipeline": "bm25", "ms_per_query": 1.0,
                              "run": str(write_run(bm25, runs / "bm25.trec", tag="bm25"))},
              "systems": [], "complete": True}
    for system, flipped in systems.items():
        ranked = [ranking(q, order[q][::-1] if q in flipped else order[q], system) for q in qids]
        report["systems"].append({
            "system": system, "model": "m", "label": system, "pipeline": system,
            "wall_s": 2.0 * len(qids), "cpu_s_per_query": 3.0, "load_avg": [1.0, 1.0],
            "windows": {"windows": len(qids), "kept_order": 1, "named_none": 0},
            "run": str(write_run(ranked, runs / f"{system}-m.trec", tag=system))})
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(report))
    return path, report


def test_rerank_slices_join_consecutive_slices_as_one_run(tmp_path: Path) -> None:
    from pursuit.indexes.datasets.beir import Dataset
    from pursuit.indexes.records import Query

    qids = ["q1", "q2", "q3", "q4"]
    order = {q: ["a", "b", "c"] for q in qids}
    # "c" is the only relevant document: reversing BM25's order puts it first.
    dataset = Dataset("toy", [], [Query(q, "") for q in qids], {q: {"c": 1} for q in qids})
    first = _slice(tmp_path, "s0", 0, ["q1", "q2"], order,
                   {"icr": ["q1"], "listwise": [], "ql": ["q2"]})
    second = _slice(tmp_path, "s2", 2, ["q3", "q4"], order,
                    {"icr": ["q3", "q4"], "listwise": ["q3"]})
    slices = load("rerank_slices")
    out = tmp_path / "joined.json"
    report = slices.join([second, first], dataset, out)  # any order in, joined by start
    rows = {r["system"]: r for r in report["systems"]}
    assert report["queries"] == 4 and report["start"] == 0
    assert report["incomplete"] == ["ql"] and report["complete"] is False
    assert report["first_stage"]["RR@10"] == pytest.approx(1 / 3)
    assert rows["icr"]["RR@10"] == pytest.approx((1 + 1 / 3 + 1 + 1) / 4)
    assert rows["listwise"]["RR@10"] == pytest.approx((1 / 3 * 3 + 1) / 4)
    assert rows["icr"]["s_per_query"] == 2.0 and rows["icr"]["cpu_s_per_query"] == 3.0
    assert rows["listwise"]["windows"] == {"windows": 4, "kept_order": 2, "named_none": 0}
    icr_test = next(r for r in report["comparison"]["rows"] if r["system"] == "icr")
    assert (icr_test["measures"]["RR@10"]["wins"], icr_test["measures"]["RR@10"]["ties"]) == (3, 1)
    assert report["speed_check"][0]["listwise_over_icr_wall"] == 1.0
    joined_run = (tmp_path / "joined-runs" / "icr-m.trec").read_text().splitlines()
    assert [line.split()[0] for line in joined_run] == ["q1"] * 3 + ["q2"] * 3 + ["q3"] * 3 + \
        ["q4"] * 3
    assert joined_run[0].split()[2] == "c"


def test_rerank_slices_refuse_a_gap_or_a_slice_of_other_queries(tmp_path: Path) -> None:
    from pursuit.indexes.datasets.beir import Dataset
    from pursuit.indexes.records import Query

    qids = ["q1", "q2", "q3", "q4"]
    order = {q: ["a", "b", "c"] for q in qids}
    dataset = Dataset("toy", [], [Query(q, "") for q in qids], {q: {"c": 1} for q in qids})
    slices = load("rerank_slices")
    first = _slice(tmp_path, "s0", 0, ["q1"], order, {"icr": []})
    gap = _slice(tmp_path, "s2", 2, ["q3", "q4"], order, {"icr": []})
    with pytest.raises(ValueError, match="slice starts at query 2, expected 1; slices must "
                                         "follow each other without a gap or an overlap"):
        slices.join([first, gap], dataset, tmp_path / "j.json")
    deeper = _slice(tmp_path, "s1k", 1, ["q2"], order, {"icr": []})
    deeper[1]["k"] = 20
    with pytest.raises(ValueError, match=r"s1k.json: k 20 differs from 3 in .*s0.json$"):
        slices.join([deeper, first], dataset, tmp_path / "j.json")
    shifted = _slice(tmp_path, "s1", 1, ["q3"], order, {"icr": []})  # says 1, ranked q3
    with pytest.raises(ValueError, match="its BM25 run does not hold test queries 1 to 1 of toy"):
        slices.join([first, shifted], dataset, tmp_path / "j.json")
    (tmp_path / "s1-runs" / "icr-m.trec").unlink()
    again = _slice(tmp_path, "s1", 1, ["q2"], order, {})
    again[1]["systems"] = shifted[1]["systems"]  # names a run that is gone
    with pytest.raises(ValueError, match="its run .*icr-m.trec is missing"):
        slices.join([first, again], dataset, tmp_path / "j.json")


def test_bm25_pools_rank_each_query_and_attach_documents_only_when_asked() -> None:
    from pursuit.indexes.records import Doc, Query

    pools = load("pools")
    corpus = [Doc("lava", "Lava flows from a volcano."), Doc("moon", "The moon pulls the tide."),
              Doc("snake", "A python is a snake."), Doc("tide", "Tide tables list the tide.")]
    queries = [Query("q1", "moon tide"), Query("q2", "python snake")]
    got = pools.bm25_pools(corpus, queries, 2, source="test")
    assert [r.query.id for r in got] == ["q1", "q2"]
    assert [r.doc_ids() for r in got] == [["moon", "tide"], ["snake"]]
    assert got[0].hits[0].doc is not None
    assert got[0].hits[0].doc.text == "The moon pulls the tide."
    bare = pools.bm25_pools(corpus, queries, 2, source="test", fetch_docs=False)
    assert [r.doc_ids() for r in bare] == [["moon", "tide"], ["snake"]]
    assert all(h.doc is None for r in bare for h in r.hits)
