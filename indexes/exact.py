"""Exact (brute-force) top-k search over a matrix of vectors, with numpy or torch.

These are the ground truth for approximate search, the path a filtered search takes when
few documents pass the filter, and (with torch on a GPU) the fast path on machines whose
faiss has no GPU support. Scores are always "higher is better": the inner product for
``metric="ip"``, the negative squared L2 distance for ``metric="l2"``.
"""

from __future__ import annotations

import numpy as np

# A query block's score matrix stays under ~64 MiB of float32.
_BLOCK_FLOATS = 1 << 24


def _scores(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    s = queries @ vectors.T
    if metric == "l2":
        s = 2.0 * s - np.einsum("ij,ij->i", vectors, vectors)[None, :]
        s -= np.einsum("ij,ij->i", queries, queries)[:, None]
    return s


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str = "ip",
                 positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` positions and scores for each query, with numpy.

    Args:
        vectors: ``(n, dim)`` float32 (a memory map is fine: only the rows searched are read).
        queries: ``(nq, dim)`` float32.
        k: Results per query; rows are padded with position -1 and score -inf.
        metric: ``"ip"`` or ``"l2"``.
        positions: Search only these rows of ``vectors`` (sorted ascending); ``None`` for all.

    Returns:
        ``(positions, scores)``, each ``(nq, k)``: int64 positions into ``vectors`` and
        float32 scores, best first; equal scores come out in position order.
    """
    nq = len(queries)
    out_pos = np.full((nq, k), -1, dtype=np.int64)
    out_scores = np.full((nq, k), -np.inf, dtype=np.float32)
    sub = vectors if positions is None else vectors[positions]
    n = len(sub)
    if n == 0 or nq == 0:
        return out_pos, out_scores
    sub = np.ascontiguousarray(sub, dtype=np.float32)
    kk = min(k, n)
    block = max(1, _BLOCK_FLOATS // n)
    for start in range(0, nq, block):
        s = _scores(np.asarray(queries[start:start + block], dtype=np.float32), sub, metric)
        if kk < n:
            # argpartition finds the top kk unordered; sorting the kept indices first makes
            # the stable sort below break score ties by position.
            top = np.sort(np.argpartition(-s, kk - 1, axis=1)[:, :kk], axis=1)
        else:
            top = np.broadcast_to(np.arange(n), s.shape)
        top_scores = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        found = np.take_along_axis(top, order, axis=1)
        stop = start + len(s)
        out_pos[start:stop, :kk] = found if positions is None else positions[found]
        out_scores[start:stop, :kk] = np.take_along_axis(top_scores, order, axis=1)
    return out_pos, out_scores


class TorchExactSearch:
    """Exact top-k search with torch matrix products, on the GPU or the CPU.

    The vectors are copied to ``device`` once, as float32 (exact, like ``Flat``).

    Args:
        vectors: ``(n, dim)`` float32.
        metric: ``"ip"`` or ``"l2"``.
        device: A torch device string, e.g. ``"cuda"`` or ``"cpu"``.
    """

    def __init__(self, vectors: np.ndarray, metric: str, device: str) -> None:
        import torch  # only the GPU fallback needs torch here; indexes/ stays light to import

        self.torch, self.metric, self.device = torch, metric, device
        self.vectors = torch.from_numpy(np.array(vectors, dtype=np.float32)).to(device)
        self.sq_norms = (self.vectors * self.vectors).sum(dim=1)

    def search(self, queries: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` positions and scores (same contract as :func:`exact_search`).

        Args:
            queries: ``(nq, dim)`` float32.
            k: Results per query.
            allowed: Boolean per vector position; ``False`` positions are never returned.
        """
        torch = self.torch
        nq, n = len(queries), self.vectors.shape[0]
        out_pos = np.full((nq, k), -1, dtype=np.int64)
        out_scores = np.full((nq, k), -np.inf, dtype=np.float32)
        if n == 0 or nq == 0:
            return out_pos, out_scores
        kk = min(k, n)
        blocked = None if allowed is None else torch.from_numpy(~np.asarray(allowed)).to(self.device)
        block = max(1, _BLOCK_FLOATS // n)
        with torch.inference_mode():
            for start in range(0, nq, block):
                q = torch.from_numpy(np.ascontiguousarray(queries[start:start + block],
                                                          dtype=np.float32)).to(self.device)
                s = q @ self.vectors.T
                if self.metric == "l2":
                    s = 2.0 * s - self.sq_norms[None, :] - (q * q).sum(dim=1)[:, None]
                if blocked is not None:
                    s.masked_fill_(blocked[None, :], float("-inf"))
                scores, pos = torch.topk(s, kk, dim=1)
                pos[torch.isneginf(scores)] = -1
                stop = start + len(q)
                out_pos[start:stop, :kk] = pos.cpu().numpy()
                out_scores[start:stop, :kk] = scores.float().cpu().numpy()
        return out_pos, out_scores
