"""GPU cost of attention reranking: full causal prefill, block-sparse BlockRank, ICR, the floor.

Random weights at real shapes (weights do not change speed), bf16 on CUDA (fp32 on the CPU).
Each prompt is an instruction block (``--instruction-tokens``, 64), ``docs`` document blocks of
``--doc-tokens`` (160) and a query block (``--query-tokens``, 32) of random token ids. For
each model shape and pool size, in this order (most important first):

* ``floor``: projections + MLP only: every layer's norms, q/k/v/o projections, rotary and MLP
  over all T tokens, attention replaced by the layer's own queries (the same matmuls minus
  attention; built from ``BlockForward.qkv`` / ``BlockForward.finish``);
* ``full``: the stock decoder forward (``model.model``, SDPA causal over all T tokens, no LM
  head, no KV cache, no attention weights);
* ``blocksparse_mid``: the project's BlockRank (``rerankers.block_forward.score_layout``,
  ``"batched"`` path: documents padded into SDPA batches, ``--batch-size`` documents per batch,
  0 = all in one) scoring at the middle layer, where the reranker stops;
* ``blocksparse_full``: the same, scoring at the last layer, like-for-like with ``full``;
* ``icr``: ICR's passes (``rerankers.attention``): ``prefill`` of instruction + documents up
  to the last of ICR's default (middle-third) layers, ``span_attention`` for the query span
  and for an "N/A" span of the same length, ``rerankers.icr.calibrated_scores`` (transformers
  5.17 calls the KV cache ``past_key_values``: see :func:`cache_keyword`);
* ``blocksparse_mid_b<N>``: ``blocksparse_mid`` with the reranker's own default batch of
  ``--reranker-batch-size`` (16) documents (0 skips the case).

Every case is warmed up once, then timed ``--repeats`` times (synchronised; median reported)
with peak CUDA memory reset per case (``peak_mem_gib`` includes the model's ``weights_gib``).
``ratio_to_floor`` divides by the same pool's ``floor``;
``ratio_to_floor_at_depth`` divides by the floor scaled to the layers the case touches
(``depth / layers``; a case that stops at layer l touches l + 1 layers but runs only part of
the last one, so this ratio errs low). An out-of-memory case is recorded and the run goes on.
No new case starts once ``--budget-s`` is spent; a final ``skipped`` line names the others.

Prints one JSON line per case and writes them to ``--out`` (``bench/results/gpu_rerank.jsonl``,
rewritten per run, flushed line by line so a killed run keeps what it measured).

Run on a GPU machine from the repository root (nothing is downloaded; needs torch and
transformers only, no faiss)::

    python bench/gpu_rerank.py                      # 1.5B and 7B shapes, 100 and 500 docs
    python bench/gpu_rerank.py --shapes qwen2.5-1.5b --docs 100 --budget-s 120

On the CPU with tiny shapes (what ``tests/bench/test_gpu_rerank.py`` runs)::

    .venv/bin/python bench/gpu_rerank.py --tiny --device cpu

``pursuit`` maps onto the repository root (setuptools ``package-dir``), so a copy of the
repository that was never ``pip install``-ed has no importable ``pursuit``; when the import
fails this script links a temporary ``pursuit`` -> repository root and puts its folder on
``sys.path`` (``pip install -e . --no-deps`` works too).
"""

from __future__ import annotations

import argparse
import atexit
import inspect
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _bootstrap_pursuit() -> None:
    """Make ``import pursuit`` work from an uninstalled copy of the repository."""
    try:
        import pursuit  # noqa: F401
    except ImportError:
        folder = Path(tempfile.mkdtemp(prefix="pursuit-path-"))
        (folder / "pursuit").symlink_to(ROOT, target_is_directory=True)
        sys.path.insert(0, str(folder))
        atexit.register(shutil.rmtree, folder, True)  # removes the link, never its target


_bootstrap_pursuit()

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from pursuit.rerankers.attention import prefill, span_attention  # noqa: E402
from pursuit.rerankers.blockrank.blocks import BlockLayout  # noqa: E402
from pursuit.rerankers.blockrank.forward import BlockForward, score_layout  # noqa: E402
from pursuit.rerankers.blockrank.reranker import resolve_layer  # noqa: E402
from pursuit.rerankers.icr import calibrated_scores, resolve_layers  # noqa: E402

#: Decoder shapes (Hugging Face config fields). Positions reach 80k tokens in ``full``, so
#: the RoPE table is sized for that; Mistral's sliding window is off (v0.2+, and a window
#: would turn ``full`` into masked attention).
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-1.5b": {"model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2,
                     "intermediate_size": 8960, "vocab_size": 151936,
                     "tie_word_embeddings": True},
    "mistral-7b": {"model_type": "mistral", "hidden_size": 4096, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 8,
                   "intermediate_size": 14336, "vocab_size": 32000, "sliding_window": None,
                   "tie_word_embeddings": False},
    "tiny": {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
             "vocab_size": 512, "tie_word_embeddings": True},
}


@dataclass
class Setup:
    """One model shape and one prompt: what every case of a pool runs on."""

    shape: str
    model: Any
    layout: BlockLayout
    na_query: tuple[int, ...]
    device: torch.device

    @property
    def n_layers(self) -> int:
        """Decoder layers of the model."""
        return int(self.model.config.num_hidden_layers)

    def ids(self) -> torch.Tensor:
        """The whole prompt as one causal sequence ``[1, T]`` on the device."""
        return torch.tensor([self.layout.flat_ids()], device=self.device)


def build_model(shape: str, device: torch.device, dtype: torch.dtype) -> Any:
    """A random-weight causal LM of ``shape``, created on ``device`` (no CPU round trip)."""
    fields = dict(SHAPES[shape])
    config = AutoConfig.for_model(fields.pop("model_type"), max_position_embeddings=131072,
                                  **fields)
    torch.manual_seed(0)
    with device:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def make_layout(vocab: int, docs: int, doc_tokens: int, instruction_tokens: int,
                query_tokens: int, seed: int = 0) -> tuple[BlockLayout, tuple[int, ...]]:
    """A BlockRank layout of random ids and a random "N/A" span as long as the query."""
    g = torch.Generator().manual_seed(seed)

    def rand(n: int) -> tuple[int, ...]:
        return tuple(torch.randint(0, vocab, (n,), generator=g).tolist())

    query = rand(query_tokens)
    layout = BlockLayout(rand(instruction_tokens), tuple(rand(doc_tokens) for _ in range(docs)),
                         query, (query_tokens - 1,))
    return layout, rand(query_tokens)


def floor_pass(s: Setup) -> dict[str, Any]:
    """Every layer's projections, rotary, norms and MLP over all tokens; no attention."""
    engine = BlockForward(s.model, s.n_layers - 1)
    ids = s.ids()
    h = engine.embed(ids)
    rope = engine.rope(torch.arange(ids.shape[1]), h)
    for i in range(s.n_layers):
        q, _, _ = engine.qkv(i, h, rope)  # k and v: the same matmuls, then nothing reads them
        assert q is not None
        h = engine.finish(i, h, q)
    out = engine.decoder.norm(h)
    return {"n_outputs": int(out.shape[1]), "depth": s.n_layers}


def full_pass(s: Setup) -> dict[str, Any]:
    """The stock decoder forward, causal SDPA over the whole prompt."""
    out = s.model.model(input_ids=s.ids(), use_cache=False).last_hidden_state
    return {"n_outputs": int(out.shape[1]), "depth": s.n_layers}


def blocksparse_pass(s: Setup, layer: int | str, batch_size: int) -> dict[str, Any]:
    """BlockRank's forward as the reranker runs it (``score_layout``, no document cache)."""
    engine = BlockForward(s.model, resolve_layer(layer, s.n_layers))
    group = batch_size or len(s.layout.docs)
    run = score_layout(engine, s.layout, model_id=s.shape, path="batched", batch_size=group)
    scores = run.scores.float().cpu()
    return {"n_scores": scores.numel(), "scores_sum": round(float(scores.sum()), 6),
            "layer": engine.layer, "depth": engine.layer + 1,
            "batch_size": min(group, len(s.layout.docs))}


@contextmanager
def cache_keyword(model: Any) -> Iterator[bool]:
    """Let ``rerankers.attention`` pass its KV cache to models that call it ``past_key_values``.

    ``rerankers.attention`` calls ``model.base_model(..., cache=cache)``, the keyword of
    transformers 5.24 (the project's pin); 5.17 (the reference GPU machine) names it
    ``past_key_values`` and would drop ``cache`` silently. Inside this block the base model's
    forward is wrapped to rename it; yields whether it had to.
    """
    base = model.base_model
    params = inspect.signature(base.forward).parameters
    if "cache" in params or "past_key_values" not in params:
        yield False
        return
    original = base.forward

    def forward(*args: Any, cache: Any = None, **kwargs: Any) -> Any:
        if cache is not None:
            kwargs["past_key_values"] = cache
        return original(*args, **kwargs)

    base.forward = forward  # an instance attribute shadows the class's forward
    try:
        yield True
    finally:
        del base.forward


def icr_pass(s: Setup) -> dict[str, Any]:
    """ICR: one prefill of instruction + documents, query and "N/A" span passes, calibration."""
    layers = resolve_layers("middle", s.n_layers)
    prefix = s.layout.flat_ids()[: -len(s.layout.query)]
    with cache_keyword(s.model) as renamed:
        cache = prefill(s.model, prefix, last_layer=layers[-1])
        if cache.get_seq_length() != len(prefix):
            raise RuntimeError(
                f"rerankers.attention.prefill left {cache.get_seq_length()} of {len(prefix)} "
                f"tokens in the cache under transformers {transformers.__version__}")
        s_q = span_attention(s.model, cache, s.layout.query, layers).scores[: len(prefix)]
        s_na = span_attention(s.model, cache, s.na_query, layers).scores[: len(prefix)]
    l0, n = s.layout.l0, len(s.layout.docs[0])
    spans = [(l0 + j * n, l0 + (j + 1) * n) for j in range(len(s.layout.docs))]
    scores = calibrated_scores(s_q, s_na, spans)
    return {"n_scores": len(scores), "icr_layers": f"{layers[0]}..{layers[-1]}",
            "depth": layers[-1] + 1, "cache_keyword_renamed": renamed}


def timed(fn: Callable[[], dict[str, Any]], sync: Callable[[], None], repeats: int,
          seconds_left: float) -> tuple[list[float], float, dict[str, Any]]:
    """Run ``fn`` once to warm up, then up to ``repeats`` times (fewer if time runs short).

    Returns the timed milliseconds, the warm-up milliseconds and the last run's facts.
    """
    start = time.perf_counter()
    facts = fn()
    sync()
    warm = time.perf_counter() - start
    n = max(1, min(repeats, int(seconds_left / max(warm, 1e-9))))
    times = []
    for _ in range(n):
        sync()
        start = time.perf_counter()
        facts = fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return times, warm * 1000, facts


def environment(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Versions and device fields repeated in every row, so each row stands alone."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        platform.processor() or platform.machine())
    return {"device": device.type, "device_name": name, "dtype": str(dtype).removeprefix("torch."),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--tiny`` switches every default to CPU-test sizes."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    ap.add_argument("--tiny", action="store_true",
                    help="tiny shapes (2 layers, hidden 64, a few 16-token docs) for CPU tests")
    ap.add_argument("--shapes", default=None, help=f"comma list of {', '.join(SHAPES)}")
    ap.add_argument("--docs", default=None, help="comma list of pool sizes (default 100,500)")
    ap.add_argument("--doc-tokens", type=int, default=None)
    ap.add_argument("--instruction-tokens", type=int, default=None)
    ap.add_argument("--query-tokens", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=0,
                    help="documents per padded batch in the blocksparse cases (0: all)")
    ap.add_argument("--reranker-batch-size", type=int, default=16,
                    help="extra blocksparse_mid case at this batch size (0: skip)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default); 1 is steadier on a busy CPU")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="no new case starts after this many seconds")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_rerank.jsonl"))
    args = ap.parse_args(argv)
    tiny = {"shapes": "tiny", "docs": "3,5", "doc_tokens": 16, "instruction_tokens": 8,
            "query_tokens": 4}
    real = {"shapes": "qwen2.5-1.5b,mistral-7b", "docs": "100,500", "doc_tokens": 160,
            "instruction_tokens": 64, "query_tokens": 32}
    for key, value in (tiny if args.tiny else real).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown:
        ap.error(f"--shapes: unknown shape {unknown[0]!r}; use any of {', '.join(SHAPES)}")
    args.docs = [int(d) for d in args.docs.split(",") if d]
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device; use --device cpu (with --tiny)")
    return args


class Recorder:
    """Prints rows as JSON lines, appends them to the output file, and keeps the time budget."""

    def __init__(self, out: Any, budget_s: float) -> None:
        self.out, self.budget_s = out, budget_s
        self.started = time.perf_counter()
        self.failed = False
        self.skipped: list[str] = []

    def left(self) -> float:
        """Seconds of the budget left (negative once spent)."""
        return self.budget_s - (time.perf_counter() - self.started)

    def emit(self, row: dict[str, Any]) -> None:
        """Print ``row`` and write it, flushed, so a killed run keeps what it measured."""
        line = json.dumps(row)
        print(line, flush=True)
        self.out.write(line + "\n")
        self.out.flush()


def run_case(rec: Recorder, setup: Setup, row: dict[str, Any],
             fn: Callable[[Setup], dict[str, Any]], repeats: int,
             floor_ms: float | None) -> float | None:
    """Time one case into ``row`` and emit it; return its median ms (``None`` if it failed)."""
    cuda = setup.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(setup.device)
    ms: float | None = None
    try:
        with torch.inference_mode():
            times, warm, facts = timed(lambda: fn(setup), sync, repeats, rec.left())
        ms_all = [round(t, 3) for t in times]  # ratios from the printed numbers, reproducibly
        ms = statistics.median(ms_all)
        row.update(facts, ms=ms, ms_all=ms_all, warmup_ms=round(warm, 3))
        ref = ms if row["case"] == "floor" else floor_ms
        if ref:
            row["ratio_to_floor"] = round(ms / ref, 3)
            at_depth = ref * facts["depth"] / setup.n_layers
            row["ratio_to_floor_at_depth"] = round(ms / at_depth, 3)
    except torch.OutOfMemoryError as e:
        rec.failed = True
        row.update(error=f"out of memory: {str(e).splitlines()[0]}", oom=True)
    except Exception as e:  # recorded in the row; the other cases still run
        rec.failed = True
        traceback.print_exc()
        row.update(error=f"{type(e).__name__}: {e}")
    if cuda:
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(setup.device) / 2**30, 3)
    rec.emit(row)
    return ms


def case_list(args: argparse.Namespace) -> list[tuple[str, Callable[[Setup], dict[str, Any]]]]:
    """The cases of one pool, most important first."""
    cases: list[tuple[str, Callable[[Setup], dict[str, Any]]]] = [
        ("floor", floor_pass), ("full", full_pass),
        ("blocksparse_mid", lambda s: blocksparse_pass(s, "middle", args.batch_size)),
        ("blocksparse_full", lambda s: blocksparse_pass(s, -1, args.batch_size)),
        ("icr", icr_pass)]
    if args.reranker_batch_size:
        cases.append((f"blocksparse_mid_b{args.reranker_batch_size}",
                      lambda s: blocksparse_pass(s, "middle", args.reranker_batch_size)))
    return cases


def run_shape(rec: Recorder, args: argparse.Namespace, shape: str, device: torch.device,
              dtype: torch.dtype, env: dict[str, Any]) -> None:
    """Build one model and run every pool size and case on it."""
    cases = case_list(args)
    if rec.left() <= 0:
        rec.skipped += [f"{shape}/{n}/{c}" for n in args.docs for c, _ in cases]
        return
    start = time.perf_counter()
    model = build_model(shape, device, dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    head = {"bench": "gpu_rerank", "shape": shape,
            "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
            # Without the embeddings: the size docs/gpu.md quotes (1.31B, 6.98B).
            "params_b_layers": round(sum(p.numel() for p in model.model.layers.parameters())
                                     / 1e9, 3),
            "layers": model.config.num_hidden_layers,
            "weights_gib": round(sum(p.numel() * p.element_size()
                                     for p in model.parameters()) / 2**30, 3), **env}
    rec.emit({**head, "case": "init", "s": round(time.perf_counter() - start, 2)})
    for n_docs in args.docs:
        layout, na = make_layout(model.config.vocab_size, n_docs, args.doc_tokens,
                                 args.instruction_tokens, args.query_tokens)
        setup = Setup(shape, model, layout, na, device)
        pool = {**head, "docs": n_docs, "doc_tokens": args.doc_tokens,
                "instruction_tokens": args.instruction_tokens,
                "query_tokens": args.query_tokens, "tokens": len(layout.flat_ids())}
        floor_ms: float | None = None
        for name, fn in cases:
            if rec.left() <= 0:
                rec.skipped.append(f"{shape}/{n_docs}/{name}")
                continue
            ms = run_case(rec, setup, {**pool, "case": name}, fn, args.repeats, floor_ms)
            if name == "floor":
                floor_ms = ms


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit code (1 if any case failed, OOM included).

    Example:
        >>> main(["--tiny", "--device", "cpu", "--out", "/tmp/gpu_rerank.jsonl"])  # doctest: +SKIP
        0
    """
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = {**environment(device, dtype), "threads": torch.get_num_threads()}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with out_path.open("w") as out:
            rec = Recorder(out, args.budget_s)
            for shape in args.shapes:
                run_shape(rec, args, shape, device, dtype, env)
                if device.type == "cuda":  # the model is gone; free its memory for the next
                    torch.cuda.empty_cache()
            if rec.skipped:
                rec.emit({"bench": "gpu_rerank", "case": "skipped", "budget_s": args.budget_s,
                          "skipped": rec.skipped, **env})
    finally:
        torch.set_num_threads(threads)
    print(f"wrote {out_path} in {time.perf_counter() - rec.started:.1f} s", file=sys.stderr)
    return 1 if rec.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
