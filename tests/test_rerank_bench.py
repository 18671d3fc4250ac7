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
