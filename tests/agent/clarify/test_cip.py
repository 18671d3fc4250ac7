"""C-IP arithmetic: conformal quantile, sets, Bayes, question choice, decisions, artifact."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from pursuit.agent.clarify.cip import (
    CALIBRATE_COMMAND,
    THRESHOLDS_PATH,
    CIPError,
    Thresholds,
    bayes_update,
    choose_question,
    conformal_threshold,
    decide,
    direct_answer_prob,
    expected_log2_set_size,
    load_thresholds,
    prediction_set,
)


# conformal_threshold --------------------------------------------------------------------
def test_threshold_takes_the_corrected_rank() -> None:
    # n = 4, alpha = 0.5: rank ceil(5 * 0.5) = 3 of the sorted scores -0.9, -0.8, -0.7, -0.6.
    assert conformal_threshold([0.6, 0.9, 0.7, 0.8], alpha=0.5) == -0.7
    # n = 19, alpha = 0.1: rank ceil(20 * 0.9) = 18 exactly (no float drift to 19).
    probs = [i / 20 for i in range(1, 20)]  # scores -0.95 .. -0.05
    assert conformal_threshold(probs, alpha=0.1) == -0.1
    # n = 9, alpha = 0.25: rank ceil(10 * 0.75) = 8 -> -0.2 (uncorrected ceil(9 * 0.75) = 7
    # would give -0.3 and undercover).
    assert conformal_threshold([i / 10 for i in range(1, 10)], alpha=0.25) == -0.2


def test_threshold_is_infinite_when_the_rank_passes_n() -> None:
    # n = 4, alpha = 0.1: ceil(5 * 0.9) = 5 > 4.
    assert conformal_threshold([0.9, 0.8, 0.7, 0.6], alpha=0.1) == math.inf
    assert prediction_set({"a": 0.9, "b": 0.0}, math.inf) == ["a", "b"]


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_threshold_rejects_alpha_outside_the_open_interval(alpha: float) -> None:
    with pytest.raises(ValueError, match=f"alpha must lie strictly between 0 and 1, got {alpha}"):
        conformal_threshold([0.5], alpha)


def test_threshold_needs_calibration_data() -> None:
    with pytest.raises(ValueError, match="at least one calibration probability"):
        conformal_threshold([], 0.1)


# prediction_set and Bayes ------------------------------------------------------------------
def test_set_includes_the_boundary_and_sorts_by_probability() -> None:
    probs = {"c": 0.2, "a": 0.5, "b": 0.3}
    assert prediction_set(probs, -0.3) == ["a", "b"]
    assert prediction_set(probs, -0.30000001) == ["a"]
    assert prediction_set(probs, -0.6) == []
    assert prediction_set({"y": 0.25, "x": 0.25, "z": 0.5}, 0.0) == ["z", "x", "y"]


def test_bayes_update_exact() -> None:
    post = bayes_update({"a": 0.2, "b": 0.8}, {"a": 0.9, "b": 0.3})
    assert post == pytest.approx({"a": 0.18 / 0.42, "b": 0.24 / 0.42}, abs=1e-12)
    assert bayes_update({"a": 0.5, "b": 0.5}, {"a": 1.0}) == {"a": 1.0, "b": 0.0}
    with pytest.raises(ValueError, match="probability 0 under every candidate"):
        bayes_update({"a": 1.0, "b": 0.0}, {"b": 1.0})


# question choice ------------------------------------------------------------------------------
POSTERIOR = {"a": 0.5, "b": 0.25, "c": 0.25}


def split(target: str):
    """A noiseless question that only ``target`` answers yes to."""
    return lambda q, y: {"yes": 1.0} if y == target else {"no": 1.0}


def answers(q: str, y: str) -> dict[str, float]:
    return {"is it a?": split("a"), "is it c?": split("c"),
            "anything?": lambda q, y: {"yes": 1.0}}[q](q, y)


def test_expected_log2_size_by_hand() -> None:
    # "is it a?": yes (p .5) -> {a}; no (p .5) -> {b: .5, c: .5}, both >= .3 -> log2 2.
    assert expected_log2_set_size(POSTERIOR, "is it a?", answers, -0.3) == 0.5
    # "is it c?": yes (.25) -> {c}; no (.75) -> {a: 2/3, b: 1/3}, both >= .3.
    assert expected_log2_set_size(POSTERIOR, "is it c?", answers, -0.3) == 0.75
    # An answer everyone gives leaves the posterior: a, b, c all >= .25.
    assert expected_log2_set_size(POSTERIOR, "anything?", answers, -0.25) == math.log2(3)


def test_expected_log2_size_sampled_approaches_the_exact_value() -> None:
    exact = expected_log2_set_size(POSTERIOR, "is it c?", answers, -0.3)
    sampled = expected_log2_set_size(POSTERIOR, "is it c?", answers, -0.3, samples=4000, seed=1)
    assert sampled == pytest.approx(exact, abs=0.03)
    assert sampled == expected_log2_set_size(POSTERIOR, "is it c?", answers, -0.3,
                                             samples=4000, seed=1)


def test_choose_question_picks_the_informative_question() -> None:
    # At a threshold of .2 the current set is {a, b, c}; "anything?" leaves it so.
    choice = choose_question(POSTERIOR, ["anything?", "is it c?", "is it a?"], answers, -0.2)
    assert choice.question == "is it a?"
    assert choice.score == 0.5
    assert choice.scores == {"anything?": math.log2(3), "is it c?": 0.75, "is it a?": 0.5}


def test_choose_question_noisy_answers_and_ties() -> None:
    post = {"animal": 0.5, "car": 0.5}

    def noisy(q: str, y: str) -> dict[str, float]:
        if q == "useless?":
            return {"yes": 0.5, "no": 0.5}
        return {"yes": 0.9, "no": 0.1} if y == "animal" else {"yes": 0.1, "no": 0.9}
    # After "yes" the posterior is {.9, .1}: a threshold of .2 keeps one member.
    choice = choose_question(post, ["useless?", "animal?"], noisy, -0.2)
    assert (choice.question, choice.score) == ("animal?", 0.0)
    assert choice.scores["useless?"] == 1.0
    assert choose_question(post, ["q1", "q2"], lambda q, y: {"yes": 1.0}, -0.2).question == "q1"
    with pytest.raises(ValueError, match="at least one candidate question"):
        choose_question(post, [], noisy, -0.2)


# decide -------------------------------------------------------------------------------------
def test_decide_branches() -> None:
    assert decide(["a"], 0.0, 0.0) == "answer"
    assert decide(1, 0.0, 0.0) == "answer"
    assert decide([], 0.0, 0.0) == "search"
    # |C| = 2: asking gains 1 bit for cost 3 (0.33/unit), searching gains 0.
    assert decide(["a", "b"], 0.0, 1.0, ask_cost=3, search_cost=1) == "ask"
    # Searching gains 0.5 bit for cost 1 (0.5/unit) > asking's 0.33/unit.
    assert decide(["a", "b"], 0.0, 0.5, ask_cost=3, search_cost=1) == "search"
    # Equal rates go to searching: 1 bit / 2 vs 0.5 bit / 1.
    assert decide(4, 1.0, 1.5, ask_cost=2, search_cost=1) == "search"
    # Nothing shrinks the set: answer over it.
    assert decide(["a", "b"], 1.0, 1.2) == "answer"
    with pytest.raises(ValueError, match="costs must be positive"):
        decide(["a", "b"], 0.0, 0.0, ask_cost=0)


# coverage -----------------------------------------------------------------------------------
def _draw(rng: random.Random, m: int = 5) -> tuple[dict[str, float], str]:
    """An overconfident predictor: the truth follows q, the predictor reports q sharpened."""
    q = [rng.random() ** 2 for _ in range(m)]
    truth = rng.choices(range(m), weights=q)[0]
    sharp = [v ** 3 for v in q]
    total = sum(sharp)
    return {str(i): v / total for i, v in enumerate(sharp)}, str(truth)


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_empirical_coverage_on_exchangeable_draws(alpha: float) -> None:
    rng = random.Random(7)
    covered = total = 0
    for _ in range(300):
        cal = [_draw(rng) for _ in range(40)]
        qhat = conformal_threshold([p[y] for p, y in cal], alpha)
        for p, y in (_draw(rng) for _ in range(40)):
            covered += y in prediction_set(p, qhat)
            total += 1
    coverage = covered / total
    # Split conformal: 1 - alpha <= coverage <= 1 - alpha + 1 / (n + 1) for continuous scores.
    assert 1 - alpha - 0.01 <= coverage <= 1 - alpha + 1 / 41 + 0.01


# thresholds artifact ---------------------------------------------------------------------------
def test_qhat_uses_the_largest_calibrated_length() -> None:
    th = Thresholds(alpha=0.1, model="m", qhats={0: -0.3, 2: -0.2})
    assert (th.qhat(0), th.qhat(1), th.qhat(2), th.qhat(7)) == (-0.3, -0.3, -0.2, -0.2)
    with pytest.raises(CIPError, match=r"no threshold calibrated for history length -1"):
        th.qhat(-1)


def test_committed_artifact_loads() -> None:
    data = json.loads(THRESHOLDS_PATH.read_text(encoding="utf-8"))
    th = load_thresholds()
    assert th.version == data["version"] == 1
    assert th.alpha == data["default_alpha"] == 0.1
    assert th.model == data["model"] == "qwen2.5-coder-0.5b"
    cal = data["calibrations"][0]
    assert sorted(th.qhats) == [0, 1, 2]
    for k in (0, 1, 2):
        raw = cal["qhat"][str(k)]
        assert th.qhat(k) == (math.inf if raw is None else raw)
        assert th.counts[k] == cal["n"][str(k)] > 0
        assert -1.0 <= th.qhat(k) <= 0.0 or th.qhat(k) == math.inf
    assert load_thresholds(alpha=0.2).alpha == 0.2
    assert json.loads(th.scorer)["model"] == "qwen2.5-coder-0.5b"
    for name in ("train", "dev"):
        assert len(data["calibration_data"]["files"][f"clariq/{name}.tsv"]) == 64
    assert data["command"].startswith(CALIBRATE_COMMAND)
    assert set(cal["heldout"]) == {"clariq", "interactcomp"}
    assert all(set(cal["heldout"][name]) == {"0", "1", "2"} for name in cal["heldout"])
    inter = data["interactcomp"]
    assert inter["calibrated"] is True and len(inter["file_sha256"]) == 64
    assert cal["n_by_dataset"]["interactcomp"] == len(inter["tasks_calibrating"]) > 0
    assert not set(inter["tasks_calibrating"]) & set(inter["tasks_heldout"])
    assert sum(cal["n_by_dataset"].values()) == cal["n"]["0"]


def test_load_errors_name_the_calibration_command(tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    with pytest.raises(CIPError) as err:
        load_thresholds(missing)
    assert str(err.value) == (f"C-IP thresholds not found at {missing}; calibrate with: "
                              f"{CALIBRATE_COMMAND}")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"version": 99}))
    with pytest.raises(CIPError) as err:
        load_thresholds(old)
    assert str(err.value) == (f"C-IP thresholds {old} have version 99, this code reads "
                              f"version 1; recalibrate with: {CALIBRATE_COMMAND}")
    with pytest.raises(CIPError, match=r"no calibration for alpha=0.3 \(calibrated: \[0.1, 0.2\]\)"):
        load_thresholds(alpha=0.3)


def test_null_qhat_means_every_candidate(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"version": 1, "model": "m", "default_alpha": 0.05,
                                "calibrations": [{"alpha": 0.05, "qhat": {"0": None, "1": -0.4},
                                                  "n": {"0": 10, "1": 10}}]}))
    th = load_thresholds(path)
    assert th.qhat(0) == math.inf and th.qhat(3) == -0.4
    assert prediction_set({"a": 0.99, "b": 0.01}, th.qhat(0)) == ["a", "b"]


def test_direct_answer_prob_feeds_choose_question() -> None:
    targets = {"Do you mean the animal?": "animal", "Do you mean the car?": "car"}
    ans = direct_answer_prob(targets, eps=0.1)
    assert ans("Do you mean the animal?", "animal") == {"yes": 0.9, "no": 0.1}
    assert ans("Do you mean the car?", "animal") == {"yes": 0.1, "no": 0.9}
    # Keeping p >= 0.1: "animal?" -> yes (p .58) leaves {animal}; no (p .42) leaves
    # {car .643, os .214, animal .143}. "car?" -> yes (.34) {car, animal}; no (.66)
    # {animal, os}: one bit either way.
    post = {"animal": 0.6, "car": 0.3, "os": 0.1}
    choice = choose_question(post, list(targets)[::-1], ans, qhat_next=-0.1)
    assert choice.question == "Do you mean the animal?"
    assert choice.scores == pytest.approx({"Do you mean the car?": 1.0,
                                           "Do you mean the animal?": 0.42 * math.log2(3)})
    with pytest.raises(ValueError, match=r"eps must lie in \[0, 0.5\), got 0.5"):
        direct_answer_prob(targets, eps=0.5)


def test_docstring_examples_run() -> None:
    import doctest

    from pursuit.agent.clarify import cip

    result = doctest.testmod(cip)
    assert (result.failed, result.attempted) == (0, 10)
