"""The model-free helpers of bench/rerank.py and bench/rerank_scaling.py."""

from __future__ import annotations

import importlib.util
import json
import mmap
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


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
