"""The one dtype resolver: names and aliases, clear errors, "auto" by device and CPU flags,
and how the settings, the agent config and the pipelines pass a dtype on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_lm import tiny_lm

from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.lm.dtypes import (
    DTYPE_CHOICES,
    DtypeError,
    cpu_flags,
    dtype_name,
    native_bf16,
    resolve_dtype,
)

CHOICES_TEXT = ("use one of 'auto', 'bfloat16', 'float32', 'float16' (or bf16, fp32, fp16); "
                "'auto' picks bfloat16 where the hardware computes it natively (CUDA GPUs "
                "with bf16, CPUs with AVX512-BF16 or AMX) and float32 elsewhere")
#: The flags line of an AVX2-only EPYC (like the project's CPU machines) and of a Sapphire
#: Rapids Xeon, shortened to what matters.
AVX2_ONLY = "fpu sse sse2 avx f16c fma avx2 bmi2 sha_ni vaes"
SAPPHIRE = "fpu sse2 avx avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile"


@pytest.mark.parametrize(("given", "want"), [
    ("bfloat16", torch.bfloat16), ("bf16", torch.bfloat16), ("BF16", torch.bfloat16),
    ("float32", torch.float32), ("fp32", torch.float32), ("Float32", torch.float32),
    ("float16", torch.float16), ("fp16", torch.float16), (torch.float16, torch.float16)])
def test_explicit_names_and_aliases_are_that_dtype_on_every_device(given, want) -> None:
    for device in ("cpu", "cuda", "mps", torch.device("cpu")):
        assert resolve_dtype(given, device) is want
    assert dtype_name(given) == str(want).removeprefix("torch.")


@pytest.mark.parametrize("bad", ["int8", "", "float64", "half", "bfloat"])
def test_a_bad_name_is_a_pursuit_error_listing_the_choices(bad: str) -> None:
    with pytest.raises(DtypeError) as err:
        resolve_dtype(bad, "cpu")
    assert str(err.value) == f"dtype={bad!r} is not supported; {CHOICES_TEXT}"
    assert isinstance(err.value, PursuitError) and isinstance(err.value, ValueError)
    with pytest.raises(DtypeError):
        dtype_name(torch.int8)
    assert DTYPE_CHOICES == ("auto", "bfloat16", "float32", "float16")


def test_auto_follows_the_cpu_flags_given() -> None:
    assert resolve_dtype("auto", "cpu", flags=AVX2_ONLY.split()) is torch.float32
    assert resolve_dtype("auto", "cpu", flags=["avx512_bf16"]) is torch.bfloat16
    assert resolve_dtype("auto", "cpu", flags=["amx_bf16"]) is torch.bfloat16
    assert resolve_dtype("auto", "cpu", flags=[]) is torch.float32
    assert resolve_dtype("auto", "mps", flags=["amx_bf16"]) is torch.float32
    assert not native_bf16(["avx512f", "avx2"]) and native_bf16(SAPPHIRE.split())


def test_auto_on_this_cpu_matches_its_flags() -> None:
    """float32 on an AVX2-only CPU (this project's machines), bfloat16 on one with
    AVX512-BF16 or AMX: torch's own probes and /proc/cpuinfo agree."""
    flags = cpu_flags()
    want = torch.bfloat16 if {"avx512_bf16", "amx_bf16"} & set(flags) else torch.float32
    assert resolve_dtype("auto", "cpu") is want
    assert resolve_dtype("auto", "cpu", flags=flags) is want
    assert resolve_dtype() is resolve_dtype("auto", "cpu")


def test_auto_on_cuda_asks_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", "cuda:1") is torch.bfloat16
    assert resolve_dtype("auto", torch.device("cuda", 0)) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", "cuda") is torch.float32


def test_cpu_flags_reads_the_first_flags_line_and_is_empty_without_one(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {AVX2_ONLY}\n\n"
                    f"processor\t: 1\nflags\t\t: {SAPPHIRE}\n")
    assert cpu_flags(info) == ["avx2"]
    info.write_text(f"flags : {SAPPHIRE}\n")
    assert cpu_flags(info) == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                               "amx_tile", "amx_bf16"]
    assert cpu_flags(tmp_path / "missing") == []  # macOS and Windows have no /proc/cpuinfo
    info.write_text("processor : 0\n")
    assert cpu_flags(info) == []


def test_settings_read_pursuit_dtype_and_flags_win() -> None:
    from pursuit.ui.settings import load_settings

    assert load_settings(environ={}).dtype == "auto"
    assert load_settings(environ={"PURSUIT_DTYPE": "FP32"}).dtype == "float32"
    assert load_settings({"dtype": "bf16"}, environ={"PURSUIT_DTYPE": "float32"}).dtype == \
        "bfloat16"
    with pytest.raises(PursuitError) as err:
        load_settings(environ={"PURSUIT_DTYPE": "int8"})
    assert str(err.value) == f"setting dtype: dtype='int8' is not supported; {CHOICES_TEXT}"


def test_settings_file_sets_the_dtype(tmp_path: Path) -> None:
    from pursuit.ui.settings import load_settings

    config = tmp_path / "config.toml"
    config.write_text('dtype = "float16"\n')
    assert load_settings(environ={"PURSUIT_CONFIG": str(config)}).dtype == "float16"
    env = {"PURSUIT_CONFIG": str(config), "PURSUIT_DTYPE": "auto"}
    assert load_settings(environ=env).dtype == "auto"  # the environment beats the file


def test_agent_config_checks_and_records_its_dtype() -> None:
    from pursuit.agent.config import AgentConfig

    assert AgentConfig().dtype == "auto"
    config = AgentConfig(dtype="fp32")
    assert config.dtype == "float32" and config.to_dict()["dtype"] == "float32"
    assert AgentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(PursuitError, match=r"^agent setting dtype: dtype='x' is not supported"):
        AgentConfig(dtype="x")


def test_reranker_stages_pass_a_default_dtype_that_a_pipeline_option_overrides(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pursuit.rerankers.icr as icr
    from pursuit.rerankers.registry import reranker_stages
    from pursuit.retrievers.lm.causal import wrap_causal_lm
    from pursuit.retrievers.pipeline_parser import parse_pipeline

    tiny = tiny_lm(layers=3)
    asked: list[str] = []

    def load(model: str | None = None, *, dtype: str = "auto", device: str = "auto") -> object:
        asked.append(dtype)
        return wrap_causal_lm(tiny.model, tiny.tokenizer, "tiny")

    monkeypatch.setattr(icr, "cached_lm", load)
    names = [parse_pipeline(text, reranker_stages(None, dtype=dtype)).name for text, dtype in
             (("icr", "auto"), ("icr", "float32"), ("icr(dtype='bfloat16')", "float32"))]
    assert names == ["icr", "icr", "icr(dtype='bfloat16')"]  # a settings dtype is unnamed
    assert asked == ["auto", "float32", "bfloat16"]


def test_docstring_examples_run() -> None:
    import doctest

    import pursuit.retrievers.lm.dtypes as dtypes

    result = doctest.testmod(dtypes)
    assert result.attempted >= 5 and result.failed == 0


# the command line -----------------------------------------------------------------------------
def run_cli(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[int, str, str]:
    """Run ``pursuit argv`` with ``env`` set; returns (exit code, stdout, stderr)."""
    from cli_runner import run

    return run(argv, capsys, monkeypatch, tmp_path, env)


@pytest.mark.model
def test_cli_dtype_flag_and_environment_reach_the_encoder_and_the_reranker(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from pursuit.indexes.manifest import Manifest

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "tides.md").write_text("# Tides\nThe moon pulls the ocean and makes the tide.\n")
    (notes / "lava.txt").write_text("Lava flows from a volcano during an eruption.\n")
    idx = tmp_path / "idx"

    def cli(argv: list[str], **env: str) -> tuple[int, str, str]:
        return run_cli(argv, env, capsys, monkeypatch, tmp_path)

    code, _, _ = cli(["index", str(notes), "--out", str(idx), "--dtype", "fp32", "--json"])
    assert code == 0
    assert Manifest.read(idx).components["dense"]["encoder"]["dtype"] == "float32"
    # PURSUIT_DTYPE reaches a reranker that names no dtype (as a default: the name does not
    # show it); its own option wins over it.
    from pursuit.retrievers.lm import causal

    monkeypatch.setattr(causal, "_SHARED", {})  # see which copies this search loads
    code, out, _ = cli(["search", "what makes the tide?", "-i", str(idx), "-p", "bm25%2 >> icr",
                        "--json"], PURSUIT_DTYPE="float32")
    assert code == 0 and json.loads(out)["pipeline"] == "bm25%2 >> icr"
    assert [key[1] for key in causal._SHARED] == ["torch.float32"]
    assert json.loads(out)["hits"][0]["id"] == "tides.md"
    code, out, _ = cli(["search", "tide", "-i", str(idx), "-p", "bm25%2 >> icr(dtype='fp32')",
                        "--dtype", "bfloat16", "--json"])
    assert code == 0 and json.loads(out)["pipeline"] == "bm25%2 >> icr(dtype='fp32')"
    # A bad value, from the flag or the environment, fails before any model loads.
    for argv, env in ((["--dtype", "int8"], {}), ([], {"PURSUIT_DTYPE": "int8"})):
        code, out, err = cli(["search", "tide", "-i", str(idx), "-p", "bm25", *argv], **env)
        assert code == 1 and "setting dtype: dtype='int8' is not supported; use one of 'auto'" \
            in " ".join((out + err).split())


@pytest.mark.model
def test_chat_agent_loads_every_model_in_the_settings_dtype(tmp_path: Path) -> None:
    """``pursuit serve --dtype bfloat16``: the planner, the ICR reranker and the C-IP scorer
    are one bfloat16 copy of the 0.5B (loading only: nothing is computed in bf16 here)."""
    from scripted_agent import CORPUS

    import pursuit.retrievers.lm.causal as llm
    from pursuit.indexes.collection import SearchIndex
    from pursuit.ui.settings import Settings
    from pursuit.ui.web.chatagent import load_chat_agent

    with SearchIndex.build(CORPUS, tmp_path / "idx", source="t") as index:
        before = set(llm._SHARED)
        settings = Settings(cache_dir=tmp_path, llm="qwen2.5-coder-0.5b", dtype="bf16",
                            threads=str(tmp_path / "threads.sqlite"))
        agent = load_chat_agent(index, settings)
    loaded = {key: lm for key, lm in llm._SHARED.items() if key not in before}
    assert agent.model == "qwen2.5-coder-0.5b"
    assert [(key[0], key[1]) for key in loaded] == [("qwen2.5-coder-0.5b", "torch.bfloat16")]
    assert next(iter(loaded.values())).dtype == torch.bfloat16
