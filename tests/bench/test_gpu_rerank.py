"""bench/gpu_rerank.py on tiny CPU shapes: every case runs, in order, and reports what it must.

Speed itself is only meaningful on a GPU; here the checks are the bookkeeping (cases, token
counts, scores of the right length, ratios, budget, OOM guard) and the two things that make
the script run on the reference GPU machine: ``pursuit`` importable from an uninstalled
copy, and ICR's cache keyword under transformers releases that call it ``past_key_values``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import transformers

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "gpu_rerank.py"
POOL_CASES = ["floor", "full", "blocksparse_mid", "blocksparse_full", "icr",
              "blocksparse_mid_b16"]


def load_bench() -> ModuleType:
    """Import the script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_rerank_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


gr = load_bench()


def run(out: Path, *extra: str) -> tuple[int, list[dict[str, Any]], list[str]]:
    """``main`` on tiny CPU shapes; returns the exit code, the file's rows, stdout lines."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = gr.main(["--tiny", "--device", "cpu", "--threads", "1", "--out", str(out),
                        *extra])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return code, rows, buf.getvalue().splitlines()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[dict[str, Any]], list[str]]:
    return run(tmp_path_factory.mktemp("bench") / "gpu_rerank.jsonl")


def test_every_case_runs_in_order_with_positive_times(tiny):
    code, rows, stdout = tiny
    assert code == 0
    assert [(r.get("docs"), r["case"]) for r in rows] == (
        [(None, "init")] + [(n, c) for n in (3, 5) for c in POOL_CASES])
    assert stdout == [json.dumps(r) for r in rows]  # the file is the printed lines
    for r in rows[1:]:
        assert "error" not in r
        assert len(r["ms_all"]) == 3 and all(t > 0 for t in r["ms_all"])
        assert r["ms"] == statistics.median(r["ms_all"])
        assert r["warmup_ms"] > 0


def test_rows_record_the_environment(tiny):
    _, rows, _ = tiny
    for r in rows:
        assert (r["bench"], r["shape"], r["device"], r["dtype"]) == (
            "gpu_rerank", "tiny", "cpu", "float32")
        assert (r["torch"], r["transformers"]) == (torch.__version__, transformers.__version__)
        assert r["layers"] == 2 and r["threads"] == 1
        assert "peak_mem_gib" not in r  # CUDA only


def test_main_restores_the_callers_thread_count(tmp_path):
    before = torch.get_num_threads()
    code, rows, _ = run(tmp_path / "r.jsonl", "--budget-s", "0")  # runs with --threads 1
    assert rows[0]["threads"] == 1
    assert torch.get_num_threads() == before


def test_token_counts_and_scores_have_the_pool_size(tiny):
    _, rows, _ = tiny
    for r in rows[1:]:
        n = r["docs"]
        assert r["tokens"] == 8 + n * 16 + 4
        if r["case"] in ("floor", "full"):
            assert r["n_outputs"] == r["tokens"]
        else:
            assert r["n_scores"] == n
        if r["case"].startswith("blocksparse"):
            # Attention mass of the signal token over the documents sums to 1.
            assert r["scores_sum"] == pytest.approx(1.0, abs=1e-5)
            assert r["batch_size"] == n  # 0 (all) and 16 both cover these small pools
    icr = [r for r in rows if r["case"] == "icr"]
    assert {r["icr_layers"] for r in icr} == {"0..1"}
    # transformers 5.24 calls the KV cache `cache`; 5.17 (the GPU machine) `past_key_values`.
    old_name = "cache" not in inspect.signature(transformers.Qwen2Model.forward).parameters
    assert {r["cache_keyword_renamed"] for r in icr} == {old_name}


def test_ratios_are_to_the_same_pools_floor(tiny):
    _, rows, _ = tiny
    for n in (3, 5):
        pool = {r["case"]: r for r in rows if r.get("docs") == n}
        floor = pool["floor"]["ms"]
        assert pool["floor"]["ratio_to_floor"] == 1.0
        for r in pool.values():
            assert r["ratio_to_floor"] == round(r["ms"] / floor, 3)
            assert r["depth"] == 2  # a 2-layer model: the middle layer is the last


def test_depths_on_a_four_layer_mistral(tmp_path, monkeypatch):
    # Mistral's modules (no q/k/v bias, explicit head_dim) as in the 7B shape.
    monkeypatch.setitem(gr.SHAPES, "tiny4", {**gr.SHAPES["tiny"], "model_type": "mistral",
                                             "num_hidden_layers": 4, "sliding_window": None})
    code, rows, _ = run(tmp_path / "r.jsonl", "--shapes", "tiny4", "--docs", "2",
                        "--repeats", "1", "--reranker-batch-size", "0")
    assert code == 0
    pool = {r["case"]: r for r in rows[1:]}
    assert list(pool) == POOL_CASES[:-1]
    assert all("error" not in r for r in rows)
    assert (pool["blocksparse_mid"]["layer"], pool["blocksparse_mid"]["depth"]) == (2, 3)
    assert (pool["blocksparse_full"]["layer"], pool["blocksparse_full"]["depth"]) == (3, 4)
    assert (pool["icr"]["icr_layers"], pool["icr"]["depth"]) == ("1..2", 3)
    floor = pool["floor"]["ms"]
    mid = pool["blocksparse_mid"]
    assert mid["ratio_to_floor_at_depth"] == round(mid["ms"] / (floor * 3 / 4), 3)


def test_a_spent_budget_skips_every_case(tmp_path):
    code, rows, _ = run(tmp_path / "r.jsonl", "--budget-s", "0")
    assert code == 0
    assert len(rows) == 1 and rows[0]["case"] == "skipped"
    assert rows[0]["skipped"] == [f"tiny/{n}/{c}" for n in (3, 5) for c in POOL_CASES]


def test_out_of_memory_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    def oom(setup: Any) -> dict[str, Any]:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(gr, "full_pass", oom)
    code, rows, _ = run(tmp_path / "r.jsonl", "--docs", "3", "--repeats", "1")
    assert code == 1
    full = next(r for r in rows if r["case"] == "full")
    assert full["oom"] is True and "ms" not in full
    assert full["error"] == "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    others = [r for r in rows[1:] if r["case"] != "full"]
    assert [r["case"] for r in others] == [c for c in POOL_CASES if c != "full"]
    assert all(r["ms"] > 0 and "error" not in r for r in others)


def test_unknown_shape_names_the_known_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        gr.main(["--shapes", "llama-70b", "--device", "cpu", "--out", str(tmp_path / "r")])
    assert exit_.value.code == 2
    assert ("--shapes: unknown shape 'llama-70b'; use any of qwen2.5-1.5b, mistral-7b, tiny"
            in capsys.readouterr().err)


def test_cache_keyword_renamed_only_for_old_forward_signatures():
    class Old(torch.nn.Module):
        def forward(self, input_ids: Any = None, past_key_values: Any = None,
                    use_cache: bool | None = None) -> Any:
            return past_key_values

    class New(torch.nn.Module):
        def forward(self, input_ids: Any = None, cache: Any = None) -> Any:
            return cache

    class Holder:
        def __init__(self, base: torch.nn.Module) -> None:
            self.base_model = base

    old = Holder(Old())
    with gr.cache_keyword(old) as renamed:
        assert renamed is True
        assert old.base_model(input_ids=1, cache="kv", use_cache=True) == "kv"
    assert "forward" not in vars(old.base_model)  # unwrapped afterwards
    with pytest.raises(TypeError, match="cache"):
        old.base_model(input_ids=1, cache="kv")
    new = Holder(New())
    with gr.cache_keyword(new) as renamed:
        assert renamed is False
        assert new.base_model(input_ids=1, cache="kv") == "kv"


def test_an_uninstalled_copy_imports_pursuit_through_a_temporary_link(tmp_path):
    probe = (
        "import os, runpy, sys\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        "try:\n    import pursuit\n    print('installed')\nexcept ImportError:\n    pass\n"
        f"runpy.run_path({str(BENCH)!r}, run_name='probe')\n"
        "p = sys.modules['pursuit'].__file__\n"
        "print(p)\nprint(os.path.realpath(p))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr
    linked, real = done.stdout.splitlines()
    assert Path(linked).parent.name == "pursuit" and "pursuit-path-" in linked
    assert real == str(ROOT / "__init__.py")
    assert not Path(linked).parent.parent.exists()  # the link folder is removed at exit


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_shapes_on_cuda_in_bfloat16(tmp_path):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = gr.main(["--tiny", "--device", "cuda", "--out", str(tmp_path / "r.jsonl")])
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert code == 0
    assert [r["case"] for r in rows if r.get("docs") == 3] == POOL_CASES
    for r in rows[1:]:
        assert (r["device"], r["dtype"]) == ("cuda", "bfloat16")
        assert r["ms"] > 0 and r["peak_mem_gib"] > 0 and "error" not in r
