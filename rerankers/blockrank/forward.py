"""BlockRank's forward pass, layer by layer, on a stock ``transformers`` decoder.

Rather than forking model files, :class:`BlockForward` drives the modules of a Llama-family
decoder (Qwen2, Qwen3, Llama, Mistral: ``embed_tokens``, ``layers[i].self_attn.{q,k,v,o}_proj``,
``input_layernorm``, ``post_attention_layernorm``, ``mlp``, ``rotary_emb``) itself, with its
own position ids and its own attention calls, and stops at the scoring layer.

Three passes, each with plain SDPA:

* the instruction block, causal;
* the document blocks, in groups: ``"batched"`` pads a group to a common length and runs it
  as one batch whose keys are (instruction + own block) under a lower-right causal mask;
  ``"mask"`` concatenates a group into one sequence with a boolean block mask; ``"flex"``
  does the same with FlexAttention (compiled once per length bucket; optional);
* the query block over everything, which reads the scores at the scoring layer.

The documents' keys and values come back per document (:class:`BlockKV`) so that
:func:`score_layout` can cache them and feed the query pass from cache or from fresh work
alike, which makes cache hits give bit-identical scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from pursuit.indexes.errors import PursuitError
from pursuit.rerankers.blockrank.blocks import BlockLayout
from pursuit.rerankers.blockrank.doc_cache import BlockKV, DocKVCache, kv_key

PATHS = ("mask", "batched", "flex")
_FLEX: dict[str, Any] = {}


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


class BlockForward:
    """Runs the decoder layers of ``model`` for BlockRank's blocks, scoring at ``layer``.

    Args:
        model: A ``transformers`` causal LM of the Llama family.
        layer: 0-based index of the layer whose attention scores documents; the layers
            above it are skipped unless a pass asks for logits.
    """

    def __init__(self, model: Any, layer: int) -> None:
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        needed = ("embed_tokens", "layers", "rotary_emb", "norm")
        if not all(hasattr(decoder, a) for a in needed):
            raise PursuitError(f"BlockRank drives Llama-family decoders ({', '.join(needed)}); "
                               f"{type(model).__name__} is not one; use icr or ql instead")
        self.model, self.decoder = model, decoder
        self.layers = decoder.layers
        if not 0 <= layer < len(self.layers):
            raise PursuitError(f"layer={layer} is outside the model's {len(self.layers)} layers "
                               f"(0..{len(self.layers) - 1})")
        self.layer = layer

    @property
    def device(self) -> torch.device:
        """Where the model's weights live."""
        return self.decoder.embed_tokens.weight.device

    def rope(self, positions: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(cos, sin)`` for ``positions`` shaped ``[1, 1, L, head_dim]``."""
        cos, sin = self.decoder.rotary_emb(like, positions.view(1, -1).to(self.device))
        return cos[:, None], sin[:, None]

    def qkv(self, i: int, h: torch.Tensor, rope: tuple[torch.Tensor, ...],
            need_q: bool = True) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Layer ``i``'s queries, keys and values ``[B, heads, L, head_dim]``, rotary applied."""
        attn = self.layers[i].self_attn
        x = self.layers[i].input_layernorm(h)
        b, n, d = x.shape[0], x.shape[1], attn.head_dim

        def heads(proj: Any, norm: Any) -> torch.Tensor:
            y = proj(x).view(b, n, -1, d)
            return (norm(y) if norm is not None else y).transpose(1, 2)

        k = _rotate(heads(attn.k_proj, getattr(attn, "k_norm", None)), *rope)
        v = heads(attn.v_proj, None)
        q = _rotate(heads(attn.q_proj, getattr(attn, "q_norm", None)), *rope) if need_q else None
        return q, k, v

    def finish(self, i: int, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s output projection, residuals and MLP after attention ``out``."""
        layer = self.layers[i]
        b, nh, n, d = out.shape
        h = h + layer.self_attn.o_proj(out.transpose(1, 2).reshape(b, n, nh * d))
        return h + layer.mlp(layer.post_attention_layernorm(h))

    def sdpa(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             mask: torch.Tensor | None, causal: bool = False) -> torch.Tensor:
        """Attention of layer ``i`` (grouped-query heads shared, the layer's own scale)."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                              scale=self.layers[i].self_attn.scaling,
                                              enable_gqa=True)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings of ``ids`` ``[B, L]``."""
        return self.decoder.embed_tokens(ids.to(self.device))

    def instruction_kv(self, ids: Sequence[int], depth: int) -> BlockKV:
        """Keys and values of the instruction block for layers ``0..depth``."""
        h = self.embed(torch.tensor([list(ids)]))
        rope = self.rope(torch.arange(len(ids)), h)
        out = []
        for i in range(depth + 1):
            q, k, v = self.qkv(i, h, rope, need_q=i < depth)
            out.append((k[0], v[0]))
            if i < depth:
                assert q is not None
                h = self.finish(i, h, self.sdpa(i, q, k, v, None, causal=True))
        return BlockKV(tuple(out))

    def docs_kv(self, instr: BlockKV, docs: Sequence[Sequence[int]], depth: int,
                path: str) -> list[BlockKV]:
        """Keys and values of document blocks (each sees the instruction and itself)."""
        l0, lens = instr.tokens, [len(d) for d in docs]
        mask: torch.Tensor | None
        if path == "batched":
            width = max(lens)
            ids = torch.zeros(len(docs), width, dtype=torch.long)
            for j, d in enumerate(docs):
                ids[j, : len(d)] = torch.tensor(list(d))
            positions = l0 + torch.arange(width)
            # Lower-right causal: row j sees the whole instruction and its own block up to j.
            mask = torch.ones(width, l0 + width, dtype=torch.bool, device=self.device)
            mask[:, l0:] = torch.ones(width, width, dtype=torch.bool).tril()
        else:
            ids = torch.tensor([[t for d in docs for t in d]])
            positions = torch.cat([l0 + torch.arange(n) for n in lens])
            seg = torch.repeat_interleave(torch.arange(len(docs)), torch.tensor(lens))
            mask = _doc_mask(seg, l0).to(self.device) if path == "mask" else None
        h = self.embed(ids)
        rope = self.rope(positions, h)
        per_layer = []
        for i in range(depth + 1):
            q, k, v = self.qkv(i, h, rope, need_q=i < depth)
            per_layer.append((k, v))
            if i == depth:
                break
            assert q is not None
            ik, iv = (t[None].expand(k.shape[0], -1, -1, -1) for t in instr.layers[i])
            keys, values = torch.cat([ik, k], dim=2), torch.cat([iv, v], dim=2)
            if path == "flex":
                out = _flex(q, keys, values, seg, l0, self.layers[i].self_attn.scaling)
            else:
                out = self.sdpa(i, q, keys, values, mask)
            h = self.finish(i, h, out)
        if path == "batched":
            return [BlockKV(tuple((k[j, :, :n].clone(), v[j, :, :n].clone())
                                  for k, v in per_layer)) for j, n in enumerate(lens)]
        starts = [0, *torch.tensor(lens).cumsum(0).tolist()]
        return [BlockKV(tuple((k[0, :, a:b].clone(), v[0, :, a:b].clone()) for k, v in per_layer))
                for a, b in zip(starts[:-1], starts[1:], strict=True)]

    def query_pass(self, instr: BlockKV, docs: Sequence[BlockKV], layout: BlockLayout,
                   logits: bool = False,
                   every_layer: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of ``docs`` (float32, same order) and, if asked, the query block's logits.

        The signal tokens' pre-softmax logits to document tokens only, softmaxed over those
        tokens, averaged over heads and signal tokens, summed per document block. With
        ``every_layer`` the scores of layers ``0..layer`` come back as rows ``[layer + 1,
        docs]`` (a layer sweep in one pass; ``docs`` must hold keys up to :attr:`layer`).
        """
        ids = torch.tensor([list(layout.query)])
        h = self.embed(ids)
        n = ids.shape[1]
        rope = self.rope(layout.query_start + torch.arange(n), h)
        lens = torch.tensor([d.tokens for d in docs])
        seg = torch.repeat_interleave(torch.arange(len(docs)), lens).to(self.device)
        prefix = instr.tokens + int(lens.sum())
        mask = torch.ones(n, prefix + n, dtype=torch.bool, device=self.device)
        mask[:, prefix:] = torch.ones(n, n, dtype=torch.bool).tril()
        last = len(self.layers) - 1 if logits else self.layer
        signal = torch.tensor(layout.signal, device=self.device)
        rows: list[torch.Tensor] = []
        for i in range(last + 1):
            q, k, v = self.qkv(i, h, rope)
            assert q is not None
            dk = torch.cat([d.layers[i][0] for d in docs], dim=1)[None]
            if i == self.layer or (every_layer and i < self.layer):
                rows.append(_block_mass(q[:, :, signal], dk, seg, len(docs),
                                        self.layers[i].self_attn.scaling))
                if i == self.layer and not logits:
                    break
            dv = torch.cat([d.layers[i][1] for d in docs], dim=1)[None]
            keys = torch.cat([instr.layers[i][0][None], dk, k], dim=2)
            values = torch.cat([instr.layers[i][1][None], dv, v], dim=2)
            h = self.finish(i, h, self.sdpa(i, q, keys, values, mask))
        scores = torch.stack(rows) if every_layer else rows[-1]
        if not logits:
            return scores, None
        return scores, self.model.lm_head(self.decoder.norm(h))[0]


def _doc_mask(seg: torch.Tensor, l0: int) -> torch.Tensor:
    """Boolean mask ``[D, l0 + D]`` of concatenated documents: instruction + own block, causal."""
    d = seg.numel()
    own = (seg[:, None] == seg[None, :]) & torch.ones(d, d, dtype=torch.bool).tril()
    return torch.cat([torch.ones(d, l0, dtype=torch.bool), own], dim=1)


def _block_mass(q: torch.Tensor, dk: torch.Tensor, seg: torch.Tensor, n_docs: int,
                scale: float) -> torch.Tensor:
    """Attention mass of each document from the signal queries ``q`` ``[1, H, S, d]``."""
    k = dk.repeat_interleave(q.shape[1] // dk.shape[1], dim=1)
    logits = (q.float() @ k.float().transpose(-1, -2)) * scale
    mass = logits.softmax(dim=-1).mean(dim=(0, 1, 2))
    return torch.zeros(n_docs, dtype=torch.float32, device=mass.device).index_add_(0, seg, mass)


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seg: torch.Tensor, l0: int,
          scale: float) -> torch.Tensor:
    """FlexAttention over concatenated documents, padded to a 128-token bucket."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    d = q.shape[2]
    pad = -d % 128
    seg = seg.to(q.device)
    qseg = torch.cat([seg, torch.full((pad,), -1, device=q.device, dtype=seg.dtype)])
    kseg = torch.cat([torch.full((l0,), -2, device=q.device, dtype=seg.dtype), qseg])
    q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))

    def mask_mod(b: Any, h: Any, qi: Any, ki: Any) -> Any:
        return (ki < l0) | ((qseg[qi] == kseg[ki]) & (ki - l0 <= qi))

    block = create_block_mask(mask_mod, None, None, d + pad, l0 + d + pad, device=str(q.device))
    if "fn" not in _FLEX:  # compiled once; dynamic=False recompiles once per length bucket
        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
    out = _FLEX["fn"](q, k, v, block_mask=block, scale=scale, enable_gqa=True)
    return out[:, :, :d]


@dataclass
class BlockRun:
    """What one :func:`score_layout` call produced and computed.

    Attributes:
        scores: Attention mass per document, float32, in the layout's document order.
        logits: The query block's logits ``[L, vocab]`` when asked for, else ``None``.
        doc_tokens: Document tokens run through the model (cache misses only).
        query_tokens: Query-block tokens run through the model.
        hits: Document blocks served from the cache.
    """

    scores: torch.Tensor
    logits: torch.Tensor | None
    doc_tokens: int
    query_tokens: int
    hits: int


def score_layout(engine: BlockForward, layout: BlockLayout, *, model_id: str, path: str = "batched",
                 cache: DocKVCache | None = None, batch_size: int = 16,
                 logits: bool = False) -> BlockRun:
    """Score every document block of ``layout``, reusing cached document keys and values.

    Documents are processed in a canonical order (by cache key), so permuting them changes
    nothing, not even the rounding. Logits need every layer, so they bypass the cache.
    """
    if path not in PATHS:
        raise PursuitError(f"path={path!r} is not one of {', '.join(PATHS)} (or 'auto')")
    if not layout.docs:
        raise PursuitError("BlockRank needs at least one document to score")
    depth = len(engine.layers) - 1 if logits else engine.layer
    use = cache if cache is not None and not logits else None
    dtype = str(engine.decoder.embed_tokens.weight.dtype)
    ikey = kv_key(model_id, dtype, depth, [], layout.instruction)
    instr = use.get(ikey) if use is not None else None
    if instr is None:
        instr = engine.instruction_kv(layout.instruction, depth)
        if use is not None:
            use.put(ikey, instr)
    keys = [kv_key(model_id, dtype, depth, layout.instruction, d) for d in layout.docs]
    order = sorted(range(len(keys)), key=lambda j: (keys[j], j))
    found: dict[int, BlockKV] = {}
    for j in order:
        entry = use.get(keys[j]) if use is not None else None
        if entry is not None:
            found[j] = entry
    todo = sorted((j for j in order if j not in found), key=lambda j: (len(layout.docs[j]), keys[j]))
    for a in range(0, len(todo), batch_size):
        group = todo[a:a + batch_size]
        for j, kv in zip(group, engine.docs_kv(instr, [layout.docs[j] for j in group], depth, path),
                         strict=True):
            found[j] = kv
            if use is not None:
                use.put(keys[j], kv)
    hits = len(layout.docs) - len(todo)
    canon_scores, out = engine.query_pass(instr, [found[j] for j in order], layout, logits)
    back = torch.argsort(torch.tensor(order, device=canon_scores.device))
    scores = canon_scores[back]  # a gather keeps gradients for fine-tuning
    return BlockRun(scores, out, sum(len(layout.docs[j]) for j in todo), len(layout.query), hits)
