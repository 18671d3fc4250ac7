"""The clarifier the graph's ``clarify`` node calls: C-IP over interpretations of a search.

For a question (and the clarifications answered so far) :class:`CIPClarifier` runs a first
cheap search (BM25, with the "as of" filter), asks the model which distinct entities or
intents those results support, scores p(y | question, history) over them, and forms the
conformal prediction set with the calibrated threshold for the history length
(interpretations that only repeat the question's own words are dropped first: they are
aspects of one meaning, not different meanings)
(:mod:`pursuit.agent.clarify.cip`). With one member it lets the agent go on. With more it considers
closed questions built from the set ("Do you mean X?" for each member, and one "Which do
you mean?" with the members as options), picks the one with the smallest expected log2 set
size after the answer, and asks only when that reduction per unit cost beats searching more
(which cannot tell what the user has in mind, so its expected size is today's).

The user model for those questions is analytic: a user who means y answers "Do you mean
X?" with yes exactly when X is y, and picks y among options, each with probability
``1 - noise``. It needs no model call, and it is the behaviour the buttons in the chat
offer.

Example:
    >>> clarifier = default_clarifier(index, llm)                        # doctest: +SKIP
    >>> clarifier.decide("jaguar top speed", [], None)["options"]       # doctest: +SKIP
    ['the animal', 'the car', 'something else']
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pursuit.agent.citations import content_words
from pursuit.agent.clarify.cip import (
    Thresholds,
    choose_question,
    decide,
    load_thresholds,
    log2_size,
    prediction_set,
)
from pursuit.agent.clarify.interpret import (
    Interpretation,
    InterpretationScorer,
    LogitScorer,
    candidate_interpretations,
)
from pursuit.agent.llm.contract import LLMClient
from pursuit.agent.searcher import as_of_filter
from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.records import Hit, Query
from pursuit.retrievers.lm.causal import shared_causal_lm
from pursuit.retrievers.registry import index_stages

__all__ = ["CIPClarifier", "OTHER", "default_clarifier", "informative"]

#: The extra option of a multiple-choice question: none of the listed meanings.
OTHER = "something else"

#: ``search(question, as_of) -> top hits`` of the first cheap search.
CheapSearch = Callable[[str, str | None], Sequence[Hit]]


class CIPClarifier:
    """Decides whether and what to ask, by conformal set size.

    Args:
        llm: Proposes the candidate interpretations.
        scorer: p(y | question, history) over the candidates.
        search: The first cheap search.
        thresholds: Calibrated q̂ per history length.
        ask_cost: Cost of bothering the user, in units of one more search.
        noise: Probability that the simulated user answers against their meaning.
        max_candidates: Interpretations considered.
    """

    def __init__(self, *, llm: LLMClient, scorer: InterpretationScorer, search: CheapSearch,
                 thresholds: Thresholds, ask_cost: float = 3.0, noise: float = 0.05,
                 max_candidates: int = 4) -> None:
        self.llm, self.scorer, self.search, self.thresholds = llm, scorer, search, thresholds
        self.ask_cost, self.noise, self.max_candidates = ask_cost, noise, max_candidates
        self._candidates: dict[tuple[str, str | None], list[Interpretation]] = {}
        self._lock = threading.Lock()

    def candidates(self, question: str, as_of: str | None) -> list[Interpretation]:
        """The interpretations of ``question``, computed once per question and date."""
        key = (question, as_of)
        with self._lock:
            if key not in self._candidates:
                hits = self.search(question, as_of)
                found = candidate_interpretations(question, hits, self.llm,
                                                  max_candidates=self.max_candidates)
                self._candidates[key] = informative(found, question)
            return self._candidates[key]

    def questions(self, members: Sequence[Interpretation]) -> dict[str, list[str]]:
        """Closed questions about the set's members, each with its answer options."""
        out = {"Which do you mean?": [m.text for m in members] + [OTHER]}  # wins ties
        out.update({f"Do you mean {m.text}?": ["yes", "no"] for m in members})
        return out

    def _answer_prob(self, by_text: Mapping[str, Interpretation]) -> Callable[[str, str], dict[str, float]]:
        n = self.noise

        def answer_prob(question: str, y: str) -> dict[str, float]:
            if question == "Which do you mean?":
                options = list(by_text) + [OTHER]
                meant = next(t for t, i in by_text.items() if i.id == y)
                return {o: (1 - n) if o == meant else n / (len(options) - 1) for o in options}
            asked = question.removeprefix("Do you mean ").removesuffix("?")
            match = by_text[asked].id == y
            return {"yes": 1 - n if match else n, "no": n if match else 1 - n}
        return answer_prob

    def decide(self, question: str, clarifications: list[dict[str, Any]],
               as_of: str | None) -> dict[str, Any] | None:
        """The closed question to ask now, or ``None`` when asking is not worth it."""
        candidates = self.candidates(question, as_of)
        if len(candidates) < 2:
            return None
        history = [(c["question"], str(c["answer"])) for c in clarifications]
        probs = self.scorer.probs(question, history, candidates)
        k = len(history)
        members_ids = prediction_set(probs, self.thresholds.qhat(k))
        if len(members_ids) <= 1:
            return None
        by_id = {c.id: c for c in candidates}
        members = [by_id[i] for i in members_ids]
        asked = {c["question"] for c in clarifications}
        options = {q: o for q, o in self.questions(members).items() if q not in asked}
        if not options:
            return None
        posterior = {i: probs[i] for i in members_ids}
        total = sum(posterior.values())
        posterior = {i: p / total for i, p in posterior.items()}
        by_text = {m.text: m for m in members}
        choice = choose_question(posterior, list(options), self._answer_prob(by_text),
                                 self.thresholds.qhat(k + 1))
        now = log2_size(len(members))
        if choice.score > now - 1e-9:  # no question is expected to shrink the set
            return None
        if decide(members_ids, choice.score, now, ask_cost=self.ask_cost) != "ask":
            return None
        return {"question": choice.question, "options": options[choice.question],
                "interpretations": [m.text for m in members],
                "set_size": len(members), "expected_log2_size": round(choice.score, 4)}


def informative(candidates: Sequence[Interpretation], question: str) -> list[Interpretation]:
    """The candidates that say more than the question: a reading whose content words all
    occur in the question ("decorator", "lru_cache" for a question about lru_cache) is an
    aspect of the one meaning, not another meaning, so it is no reason to ask."""
    asked = content_words(question)
    return [c for c in candidates if content_words(c.text) - asked]


def default_clarifier(index: SearchIndex, llm: LLMClient, *, k: int = 5,
                      thresholds: Thresholds | None = None,
                      dtype: str = "auto") -> CIPClarifier:
    """The clarifier with the committed thresholds and their model as the scorer.

    The first search is BM25's top ``k``; the scorer is the in-process model the thresholds
    were calibrated with (thresholds do not transfer between models), in ``dtype``: the
    calibration's dtype is recorded with the thresholds, but bf16 and float32 differ only
    in rounding, and emulated bf16 would make every question several times slower.
    """
    thresholds = thresholds or load_thresholds()
    bm25 = index_stages(index, fetch_docs=True)["bm25"](k=k)

    def search(question: str, as_of: str | None) -> Sequence[Hit]:
        flt = as_of_filter(as_of)
        return bm25.search(Query("clarify", question, {"filter": flt} if flt else {})).hits

    scorer = LogitScorer(shared_causal_lm(thresholds.model, dtype=dtype))
    return CIPClarifier(llm=llm, scorer=scorer, search=search, thresholds=thresholds)
