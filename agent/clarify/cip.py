"""Conformal Information Pursuit (C-IP): prediction sets and which clarifying question to ask.

The clarify node holds a finite set of candidate interpretations Y and a predictor
p(y | history) (:mod:`pursuit.agent.clarify.interpret`). Conformal calibration turns that
predictor into *sets*: for a history of length k, ``C(h) = {y : p(y | h) >= -q̂_k}`` holds
the user's meaning with probability at least 1 - alpha whenever the calibration histories
and the new one are exchangeable. The size of C is the agent's uncertainty: one member
means answer, several mean ask (a closed question) or search more, whichever shrinks the
set more per unit of cost.

Everything here is pure arithmetic on plain data, no model code. Thresholds come from
``agent/clarify/cip_thresholds.json`` (:func:`load_thresholds`), written by
``bench/calibrate_cip.py``; they belong to the model and scorer that were calibrated.

Example:
    >>> qhat = conformal_threshold([0.9, 0.8, 0.7, 0.6], alpha=0.5)
    >>> prediction_set({"animal": 0.75, "car": 0.2, "os": 0.05}, qhat)
    ['animal']
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pursuit.indexes.errors import PursuitError

__all__ = ["CALIBRATE_COMMAND", "THRESHOLDS_PATH", "THRESHOLDS_VERSION", "AnswerProb",
           "CIPError", "QuestionChoice", "Thresholds", "bayes_update", "choose_question",
           "conformal_threshold", "decide", "direct_answer_prob", "expected_log2_set_size",
           "load_thresholds", "log2_size", "prediction_set"]

#: ``answer_prob(question, y)``: the user's answer distribution to a closed question when
#: their meaning is ``y`` (e.g. ``{"yes": 0.9, "no": 0.1}``).
AnswerProb = Callable[[str, str], Mapping[str, float]]


def conformal_threshold(true_probs: Sequence[float], alpha: float) -> float:
    """Split-conformal q̂ from the predictor's probabilities of the true answers.

    Nonconformity is ``s = -p(y_true | h)``; q̂ is the ``ceil((n + 1)(1 - alpha))``-th
    smallest score (the finite-sample correction; the C-IP reference code omits it).

    Args:
        true_probs: ``p(y_true | h)`` for each of the n calibration histories.
        alpha: Allowed miss rate, strictly between 0 and 1.

    Returns:
        q̂, or ``+inf`` when ``ceil((n + 1)(1 - alpha)) > n`` (too few histories to promise
        1 - alpha: every candidate is then in the set).

    Raises:
        ValueError: ``alpha`` outside (0, 1) or no calibration histories.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    n = len(true_probs)
    if n == 0:
        raise ValueError("conformal_threshold needs at least one calibration probability")
    rank = math.ceil((n + 1) * (1.0 - alpha) - 1e-9)  # 1e-9: (n+1)(1-a) is often k + 2e-16
    if rank > n:
        return math.inf
    return sorted(-float(p) for p in true_probs)[rank - 1]


def prediction_set(probs: Mapping[str, float], qhat: float) -> list[str]:
    """The conformal set ``{y : p(y | h) >= -q̂}``, most probable first (ties by id).

    Guarantee: if q̂ came from :func:`conformal_threshold` on histories exchangeable with
    this one (same history length, same question policy, same scorer and model), the true
    ``y`` is in the set with probability at least ``1 - alpha``. The set may be empty
    when no candidate reaches the threshold.
    """
    keep = [y for y, p in probs.items() if p >= -qhat]
    return sorted(keep, key=lambda y: (-probs[y], y))


def log2_size(size: int) -> float:
    """``log2`` of a set size, counting an empty set as one (an empty set is not certainty,
    but it must not reward a question with ``-inf``)."""
    return math.log2(max(size, 1))


def bayes_update(prior: Mapping[str, float], likelihood: Mapping[str, float]) -> dict[str, float]:
    """The posterior ``p(y | h, a) ∝ p(y | h) · P(a | q, y)``.

    Args:
        prior: Current ``p(y | h)``.
        likelihood: ``P(a | q, y)`` of the observed answer per candidate (missing: 0).

    Raises:
        ValueError: the answer is impossible under every candidate with prior mass.
    """
    joint = {y: p * float(likelihood.get(y, 0.0)) for y, p in prior.items()}
    total = sum(joint.values())
    if total <= 0.0:
        raise ValueError("the answer has probability 0 under every candidate; "
                         "smooth answer_prob so each answer keeps some mass")
    return {y: v / total for y, v in joint.items()}


def _answer_outcomes(posterior: Mapping[str, float], question: str,
                     answer_prob: AnswerProb) -> dict[str, dict[str, float]]:
    """Answer -> {y: P(a | q, y)} over every answer any candidate can give."""
    table: dict[str, dict[str, float]] = {}
    for y in posterior:
        for a, pa in answer_prob(question, y).items():
            table.setdefault(a, {})[y] = float(pa)
    return table


def direct_answer_prob(targets: Mapping[str, str], eps: float = 0.1) -> AnswerProb:
    """The answer model of questions that each name one candidate ("Do you mean X?").

    ``P(yes | q, y) = 1 - eps`` when ``q`` names ``y`` and ``eps`` otherwise; no model call.

    Args:
        targets: Question -> the candidate id it names.
        eps: Chance that a user answers against their meaning (0 <= eps < 0.5).

    Example:
        >>> ans = direct_answer_prob({"Do you mean the animal?": "animal"}, eps=0.1)
        >>> ans("Do you mean the animal?", "car")
        {'yes': 0.1, 'no': 0.9}
    """
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"eps must lie in [0, 0.5), got {eps}")

    def answer_prob(question: str, y: str) -> dict[str, float]:
        hit = targets[question] == y
        return {"yes": 1.0 - eps if hit else eps, "no": eps if hit else 1.0 - eps}
    return answer_prob


def expected_log2_set_size(posterior: Mapping[str, float], question: str,
                           answer_prob: AnswerProb, qhat_next: float, *,
                           samples: int | None = None, seed: int = 0) -> float:
    """``E_{y ~ p(.|h)} E_{a ~ P(.|q,y)} log2 |C(h + (q, a))|`` after asking ``question``.

    The posterior after each answer is the Bayes update of ``posterior`` and the new set
    uses ``qhat_next`` (the threshold of the next history length). With ``samples`` the
    outer expectation is a Monte Carlo mean over y drawn from ``posterior``
    (as in the paper); by default it is enumerated exactly.

    Args:
        posterior: Current ``p(y | h)``.
        question: The closed question (a handle ``answer_prob`` understands).
        answer_prob: ``answer_prob(question, y) -> {answer: prob}``.
        qhat_next: q̂ for histories one turn longer.
        samples: Number of y to draw instead of enumerating (``None``: enumerate).
        seed: Seed of the draw.
    """
    table = _answer_outcomes(posterior, question, answer_prob)
    size_after = {a: log2_size(len(prediction_set(bayes_update(posterior, lik), qhat_next)))
                  for a, lik in table.items()
                  if any(posterior[y] * p > 0.0 for y, p in lik.items())}
    if samples is None:
        weights = dict(posterior)
    else:
        ys = sorted(posterior)
        drawn = random.Random(seed).choices(ys, weights=[posterior[y] for y in ys], k=samples)
        weights = {y: drawn.count(y) / samples for y in ys}
    total = 0.0
    for a, lik in table.items():
        mass = sum(weights[y] * p for y, p in lik.items())
        if mass > 0.0:
            total += mass * size_after[a]
    return total / sum(weights.values())


@dataclass(frozen=True)
class QuestionChoice:
    """The question to ask and every candidate's score.

    Attributes:
        question: The argmin of the expected log2 set size (first one on ties).
        score: Its expected log2 set size after the answer.
        scores: Question -> expected log2 set size, in the given order.
    """

    question: str
    score: float
    scores: dict[str, float]


def choose_question(posterior: Mapping[str, float], questions: Sequence[str],
                    answer_prob: AnswerProb, qhat_next: float, *,
                    samples: int | None = None, seed: int = 0) -> QuestionChoice:
    """The closed question whose answer is expected to leave the smallest conformal set.

    Args:
        posterior: Current ``p(y | h)`` over the candidates.
        questions: Candidate closed questions (already asked ones left out by the caller).
        answer_prob: ``answer_prob(question, y) -> {answer: prob}``.
        qhat_next: q̂ for the history one turn longer (``Thresholds.qhat(k + 1)``).
        samples: Monte Carlo draws of y per question (``None``: exact enumeration).
        seed: Seed of the draws.

    Raises:
        ValueError: no questions.

    Example:
        >>> post = {"animal": 0.5, "car": 0.5}
        >>> ans = lambda q, y: {"yes": 1.0} if q == "useless?" else (
        ...     {"yes": 0.95, "no": 0.05} if y == "animal" else {"yes": 0.05, "no": 0.95})
        >>> choose_question(post, ["useless?", "the animal?"], ans, qhat_next=-0.5).question
        'the animal?'
    """
    if not questions:
        raise ValueError("choose_question needs at least one candidate question")
    scores = {q: expected_log2_set_size(posterior, q, answer_prob, qhat_next,
                                        samples=samples, seed=seed) for q in questions}
    best = min(questions, key=lambda q: scores[q])  # min keeps the first of equal scores
    return QuestionChoice(best, scores[best], scores)


def decide(set_now: Sequence[str] | int, expected_after_ask: float,
           expected_after_search: float, ask_cost: float = 3.0,
           search_cost: float = 1.0) -> Literal["answer", "ask", "search"]:
    """Answer, ask the user, or search more: expected log2 set-size reduction per unit cost.

    - one candidate left: ``"answer"``;
    - an empty set (nothing the results support reaches the threshold): ``"search"``;
    - otherwise the gain of an action is ``log2 |C| - expected log2 size after it``;
      ``"ask"`` only when asking's gain per unit cost beats searching's (ties go to
      searching, which does not bother the user); ``"search"`` when searching has a
      positive gain otherwise; ``"answer"`` when neither is expected to shrink the set
      (the caller then answers over the whole set).

    Args:
        set_now: The current set (or its size).
        expected_after_ask: Expected log2 set size after the best question
            (:attr:`QuestionChoice.score`).
        expected_after_search: Expected log2 set size after one more search.
        ask_cost: Cost of one clarifying question (asking costs more than searching).
        search_cost: Cost of one more search.

    Raises:
        ValueError: a cost that is not positive.

    Example:
        >>> decide(["animal", "car"], expected_after_ask=0.0, expected_after_search=0.9)
        'ask'
    """
    if ask_cost <= 0 or search_cost <= 0:
        raise ValueError(f"costs must be positive, got ask_cost={ask_cost}, "
                         f"search_cost={search_cost}")
    size = set_now if isinstance(set_now, int) else len(set_now)
    if size == 1:
        return "answer"
    if size == 0:
        return "search"
    now = log2_size(size)
    ask_rate = (now - expected_after_ask) / ask_cost
    search_rate = (now - expected_after_search) / search_cost
    if ask_rate > search_rate and ask_rate > 0:
        return "ask"
    return "search" if search_rate > 0 else "answer"


# Thresholds artifact -------------------------------------------------------------------

#: The committed calibration, next to this module.
THRESHOLDS_PATH = Path(__file__).resolve().with_name("cip_thresholds.json")
#: The artifact layout this code reads.
THRESHOLDS_VERSION = 1
#: How to (re)write the artifact.
CALIBRATE_COMMAND = "nice -n 10 .venv/bin/python bench/calibrate_cip.py"


class CIPError(PursuitError):
    """The thresholds artifact is missing, of another version, or lacks what was asked."""


@dataclass(frozen=True)
class Thresholds:
    """Calibrated q̂ per history length for one alpha, model and scorer.

    Attributes:
        alpha: The miss rate the sets were calibrated for.
        model: The scorer's model (thresholds are model-specific).
        qhats: History length k -> q̂_k (``inf``: the set is every candidate).
        counts: History length k -> number of calibration histories.
        scorer: How probabilities were read (the scorer's settings).
        version: Artifact version.
    """

    alpha: float
    model: str
    qhats: Mapping[int, float]
    counts: Mapping[int, int] = field(default_factory=dict)
    scorer: str = ""
    version: int = THRESHOLDS_VERSION

    def qhat(self, k: int) -> float:
        """q̂ for a history of ``k`` turns: the largest calibrated length ``<= k``.

        Raises:
            CIPError: ``k`` is below every calibrated length.
        """
        known = [j for j in self.qhats if j <= k]
        if not known:
            raise CIPError(f"no threshold calibrated for history length {k} or shorter "
                           f"(calibrated: {sorted(self.qhats)}); rerun {CALIBRATE_COMMAND}")
        return self.qhats[max(known)]


def _qhat_value(raw: Any) -> float:
    return math.inf if raw is None else float(raw)


def load_thresholds(path: str | Path | None = None, *, alpha: float | None = None) -> Thresholds:
    """Read the calibration artifact (default: ``agent/clarify/cip_thresholds.json``).

    Args:
        path: The artifact; ``None`` for :data:`THRESHOLDS_PATH`.
        alpha: Which calibrated alpha to use; ``None`` for the artifact's ``default_alpha``.

    Raises:
        CIPError: a missing or unreadable file, another ``version``, or an alpha that
            was not calibrated; each names the command that rewrites the artifact.

    Example:
        >>> th = load_thresholds()
        >>> th.alpha, th.model
        (0.1, 'qwen2.5-coder-0.5b')
    """
    file = Path(path) if path is not None else THRESHOLDS_PATH
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CIPError(f"C-IP thresholds not found at {file}; calibrate with: "
                       f"{CALIBRATE_COMMAND}") from None
    except (OSError, ValueError) as exc:
        raise CIPError(f"cannot read C-IP thresholds {file} ({exc}); recalibrate with: "
                       f"{CALIBRATE_COMMAND}") from exc
    version = data.get("version") if isinstance(data, dict) else None
    if version != THRESHOLDS_VERSION:
        raise CIPError(f"C-IP thresholds {file} have version {version!r}, this code reads "
                       f"version {THRESHOLDS_VERSION}; recalibrate with: {CALIBRATE_COMMAND}")
    want = data["default_alpha"] if alpha is None else alpha
    for cal in data["calibrations"]:
        if math.isclose(cal["alpha"], want):
            return Thresholds(alpha=float(cal["alpha"]), model=data["model"],
                              qhats={int(k): _qhat_value(v) for k, v in cal["qhat"].items()},
                              counts={int(k): int(v) for k, v in cal["n"].items()},
                              scorer=json.dumps(data.get("scorer", {}), sort_keys=True),
                              version=version)
    have = [cal["alpha"] for cal in data["calibrations"]]
    raise CIPError(f"C-IP thresholds {file} have no calibration for alpha={want} "
                   f"(calibrated: {have}); add it with: {CALIBRATE_COMMAND} --alpha {want}")
