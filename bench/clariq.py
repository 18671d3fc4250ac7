"""ClariQ dev: clarifying-question selection and clarification-need prediction.

1. **Question selection.** For each dev topic, rank the question bank (``Q00001``, "ask
   nothing", left out) for the initial request; the relevant questions are the ones
   annotated for the topic. Recall@5/10/20/30 (mean over topics) for BM25 (ClariQ's own
   baseline: Recall@10 0.564), the packaged dense MiniLM encoder, and a hybrid of the two
   (min-max normalised scores over the whole bank, ``w * bm25 + (1 - w) * dense``) with
   ``w`` tuned on the **train** split by Recall@10. Paired t-tests over per-topic
   Recall@10 against BM25 (and of the hybrid against dense alone).
2. **Clarification need** (1..4). Predictors are plain functions ``predict(topic) -> int``
   that may read only ``topic.request``; each is scored by accuracy and macro-F1 on dev,
   with 95% bootstrap intervals over topics (50 topics make these wide).
   Rows: the train majority class, and a class-balanced multinomial logistic regression
   (L2, fixed strength, no tuning on dev) trained on train over request-only features:
   word count, and the BM25 and dense score profile of the request against the question
   bank (top-1, mean of top-10, count of BM25 matches, spread of the top-10 dense
   neighbours). The bank is part of ClariQ's task input, so this uses nothing held out.
   Other predictors (C-IP's set size) plug in as more rows of ``need_rows``.

Prints the tables and writes ``bench/results/clariq.json``.

Run:
    nice .venv/bin/python bench/clariq.py [--data ../shared/data/clariq]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.optimize import minimize
from scipy.stats import ttest_rel

from pursuit.indexes.bm25 import BM25Index
from pursuit.indexes.datasets.agent_questions import (
    NO_QUESTION,
    ClariqTopic,
    load_clariq,
    load_question_bank,
)
from pursuit.retrievers.encoders import SentenceTransformerEncoder
from pursuit.retrievers.stage import normalise

ROOT = Path(__file__).resolve().parents[1]
CUTOFFS = (5, 10, 20, 30)
GRID = [round(0.1 * i, 1) for i in range(11)]
NEEDS = (1, 2, 3, 4)
Predictor = Callable[[ClariqTopic], int]


class Bank:
    """The question bank with BM25 and dense scores for any request."""

    def __init__(self, bank: dict[str, str], encoder: SentenceTransformerEncoder) -> None:
        self.ids = [q for q in bank if q != NO_QUESTION]
        texts = [bank[q] for q in self.ids]
        self.bm25 = BM25Index.build(texts, np.arange(len(texts)))
        self.encoder = encoder
        self.vectors = encoder.encode_document(texts)

    def scores(self, requests: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(bm25, dense)`` score matrices of shape ``(len(requests), len(bank))``."""
        rows = np.arange(len(self.ids))
        bm25 = np.stack([self.bm25.score(r, rows) for r in requests]).astype(np.float64)
        dense = self.encoder.encode_query(list(requests)) @ self.vectors.T
        return bm25, dense.astype(np.float64)


def ranked(scores: np.ndarray, depth: int, *, positive_only: bool = False) -> list[int]:
    """Bank positions by score, best first (ties by position); optionally only scores > 0."""
    order = np.lexsort((np.arange(len(scores)), -scores))[:depth]
    return [int(i) for i in order if not positive_only or scores[i] > 0]


def recalls(topics: Sequence[ClariqTopic], ids: list[str], rankings: list[list[int]]
            ) -> dict[int, np.ndarray]:
    """Per-topic Recall@k for every cut-off."""
    out = {k: np.zeros(len(topics)) for k in CUTOFFS}
    for i, (topic, order) in enumerate(zip(topics, rankings, strict=True)):
        relevant = set(topic.questions)
        for k in CUTOFFS:
            out[k][i] = len(relevant & {ids[j] for j in order[:k]}) / len(relevant)
    return out


def fused(bm25: np.ndarray, dense: np.ndarray, w: float) -> list[list[int]]:
    """Rankings of ``w * minmax(bm25) + (1 - w) * minmax(dense)``, per request."""
    return [ranked(w * normalise(b, "minmax") + (1 - w) * normalise(d, "minmax"), max(CUTOFFS))
            for b, d in zip(bm25, dense, strict=True)]


def need_features(bank: Bank, requests: Sequence[str]) -> np.ndarray:
    """Request-only features for clarification need, one row per request."""
    bm25, dense = bank.scores(requests)
    top_b = -np.sort(-bm25, axis=1)[:, :10]
    top_d_idx = np.argsort(-dense, axis=1)[:, :10]
    spread = []
    for idx in top_d_idx:
        v = bank.vectors[idx]
        sim = v @ v.T
        spread.append(1.0 - sim[np.triu_indices(len(idx), 1)].mean())
    top_d = np.take_along_axis(dense, top_d_idx, axis=1)
    return np.column_stack([
        [len(r.split()) for r in requests], top_b[:, 0], top_b.mean(axis=1),
        np.log1p((bm25 > 0).sum(axis=1)), top_d[:, 0], top_d.mean(axis=1), spread,
    ])


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0) -> Callable[[np.ndarray], int]:
    """A class-balanced multinomial logistic regression over standardised features."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.column_stack([(x - mu) / sd, np.ones(len(x))])
    classes = np.array(NEEDS)
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)
    weight = (len(y) / (len(classes) * onehot.sum(axis=0)))[None, :] * onehot

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(z.shape[1], len(classes))
        logits = z @ w
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -(weight * logp).sum() + l2 * (w[:-1] ** 2).sum()
        grad = z.T @ (np.exp(logp) * weight.sum(axis=1, keepdims=True) - weight)
        grad[:-1] += 2 * l2 * w[:-1]
        return float(value), grad.ravel()

    w = minimize(loss, np.zeros(z.shape[1] * len(classes)), jac=True, method="L-BFGS-B").x
    w = w.reshape(z.shape[1], len(classes))
    return lambda row: int(classes[int(np.argmax(np.append((row - mu) / sd, 1.0) @ w))])


def need_scores(predict: Predictor, topics: Sequence[ClariqTopic]) -> dict[str, Any]:
    """Accuracy and macro-F1 of ``predict`` on ``topics``, with bootstrap intervals."""
    gold = np.array([t.need for t in topics])
    pred = np.array([predict(t) for t in topics])
    return {"accuracy": float((pred == gold).mean()), "macro_f1": macro_f1(gold, pred),
            "predicted": {str(c): int((pred == c).sum()) for c in NEEDS},
            **bootstrap_ci(gold, pred)}


def macro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    """Macro-F1 over the four labels (a label never gold nor predicted scores 0)."""
    f1 = []
    for c in NEEDS:
        tp = int(((pred == c) & (gold == c)).sum())
        denom = int((pred == c).sum() + (gold == c).sum())
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def bootstrap_ci(gold: np.ndarray, pred: np.ndarray, *, n: int = 2000, seed: int = 0
                 ) -> dict[str, list[float]]:
    """95% percentile intervals of accuracy and macro-F1 over topics resampled with replacement."""
    rng = np.random.default_rng(seed)
    acc, f1 = [], []
    for _ in range(n):
        i = rng.integers(0, len(gold), len(gold))
        acc.append(float((pred[i] == gold[i]).mean()))
        f1.append(macro_f1(gold[i], pred[i]))
    return {"accuracy_95ci": [float(v) for v in np.percentile(acc, [2.5, 97.5])],
            "macro_f1_95ci": [float(v) for v in np.percentile(f1, [2.5, 97.5])]}


def main() -> None:
    """Run both tasks; print and save the numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "clariq"))
    args = ap.parse_args()
    console = Console()
    started = time.perf_counter()
    root = Path(args.data)
    train, dev = load_clariq(root, "train"), load_clariq(root, "dev")
    bank = Bank(load_question_bank(root), SentenceTransformerEncoder())
    depth = max(CUTOFFS)

    # 1. Question selection: tune the fusion weight on train, evaluate on dev.
    tr_b, tr_d = bank.scores([t.request for t in train])
    grid = {w: float(recalls(train, bank.ids, fused(tr_b, tr_d, w))[10].mean()) for w in GRID}
    best_w = max(GRID, key=lambda w: (grid[w], -abs(w - 0.5)))
    dv_b, dv_d = bank.scores([t.request for t in dev])
    systems = {
        "bm25": recalls(dev, bank.ids, [ranked(s, depth, positive_only=True) for s in dv_b]),
        "dense (MiniLM)": recalls(dev, bank.ids, [ranked(s, depth) for s in dv_d]),
        f"hybrid w={best_w} (tuned on train)": recalls(dev, bank.ids, fused(dv_b, dv_d, best_w)),
    }
    selection: dict[str, dict[str, object]] = {}
    table = Table(title=f"ClariQ dev question selection ({len(dev)} topics)")
    for col in ["system", *(f"R@{k}" for k in CUTOFFS), "p (R@10 vs bm25)", "W/T/L"]:
        table.add_column(col)
    for name, per in systems.items():
        diff = per[10] - systems["bm25"][10]
        p = None if name == "bm25" else float(ttest_rel(per[10], systems["bm25"][10]).pvalue)
        wtl = [int((diff > 0).sum()), int((diff == 0).sum()), int((diff < 0).sum())]
        selection[name] = {**{f"recall@{k}": float(per[k].mean()) for k in CUTOFFS},
                           "p_recall@10_vs_bm25": p, "wins_ties_losses_vs_bm25": wtl}
        table.add_row(name, *(f"{per[k].mean():.3f}" for k in CUTOFFS),
                      "" if p is None else f"{p:.2g}", "" if p is None else "/".join(map(str, wtl)))
    console.print(table)
    hybrid, dense = list(systems.values())[2][10], systems["dense (MiniLM)"][10]
    p_hd = float(ttest_rel(hybrid, dense).pvalue)
    console.print(f"train Recall@10 by w_bm25: {' '.join(f'{w}:{r:.3f}' for w, r in grid.items())}"
                  f"\nhybrid vs dense alone, Recall@10: p = {p_hd:.2g}")

    # 2. Clarification need.
    majority = Counter(t.need for t in train).most_common(1)[0][0]
    model = fit_logistic(need_features(bank, [t.request for t in train]),
                         np.array([t.need for t in train]))
    dev_x = dict(zip((t.topic_id for t in dev), need_features(bank, [t.request for t in dev]),
                     strict=True))
    need_rows: dict[str, Predictor] = {
        f"majority class ({majority})": lambda t: majority,
        "logistic regression (request length + bank score profile)":
            lambda t: model(dev_x[t.topic_id]),
    }
    need = {name: need_scores(predict, dev) for name, predict in need_rows.items()}
    table = Table(title=f"ClariQ dev clarification need ({len(dev)} topics, labels 1..4)")
    for col in ("predictor", "accuracy [95% CI]", "macro-F1 [95% CI]", "predicted 1/2/3/4"):
        table.add_column(col)
    for name, s in need.items():
        a, f = s["accuracy_95ci"], s["macro_f1_95ci"]
        table.add_row(name, f"{s['accuracy']:.3f} [{a[0]:.2f}, {a[1]:.2f}]",
                      f"{s['macro_f1']:.3f} [{f[0]:.2f}, {f[1]:.2f}]",
                      "/".join(str(s["predicted"][str(c)]) for c in NEEDS))
    console.print(table)

    seconds = time.perf_counter() - started
    out = ROOT / "bench" / "results" / "clariq.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "data": str(root), "bank_questions": len(bank.ids), "encoder": bank.encoder.model_id,
        "reference_bm25_recall": {"5": 0.325, "10": 0.564, "20": 0.667, "30": 0.691},
        "train_grid_recall@10": {str(w): r for w, r in grid.items()}, "chosen_weight": best_w,
        "selection": selection, "p_recall@10_hybrid_vs_dense": p_hd, "need": need,
        "seconds": round(seconds, 1),
    }, indent=2) + "\n")
    console.print(f"wrote {out} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
