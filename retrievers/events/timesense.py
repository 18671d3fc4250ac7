"""Is a query time-sensitive? A fast rule-based detector with an optional learned threshold.

A query is time-sensitive when its answer depends on when it is asked: "earthquake today",
"who won the election", "what did the Fed announce this week". The detector adds up the
weights of the cues it finds and calls a query time-sensitive when the sum reaches the
threshold (1.0 by default, so one strong cue or two weak ones suffice):

=====================  ======  ===================================================
cue                    weight  examples
=====================  ======  ===================================================
``relative``           1.0     today, yesterday, this week, last month, tonight
``recency``            1.0     recently, latest, so far, newly, currently, breaking
``date``               1.0     June 16, 16 June 2022, 2022-06-16, 6/16/2022, Q3 2022
``year``               0.5     a year from 1900 to 2099 on its own
``news``               0.5     announced, elected, resigned, won, died, killed,
                               launched, signed, unveiled, ... (news verbs)
``event``              0.5     election, earthquake, hurricane, strike, summit,
                               verdict, ceasefire, outbreak, ... (news nouns)
``future``             1.0     will soon, upcoming, next week, is set to, how soon
``report``             0.5     according to, said, reports, officials, accused
``new``                0.5     new, now, soon, will, first-ever
``history``            -1.0    history, historical, ancient, century, in the 1960s
=====================  ======  ===================================================

Each kind counts once, however many of its words appear; ``history`` subtracts, so "the
history of the 1918 pandemic" is not about the news. Words are matched whole and
case-insensitively; there is no model, so a query costs microseconds. :func:`fit_threshold`
picks the threshold that best separates labelled examples, and :func:`mentioned_dates`
reads the calendar dates a query names (event lookup anchors on them).

Example:
    >>> detect("earthquake today").sensitive
    True
    >>> detect("how do tides work").sensitive
    False
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

_MONTHS = (r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
           r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?")


def _words(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE)


#: Cue kind -> (weight, pattern). See the module docstring for the table.
CUES: dict[str, tuple[float, re.Pattern[str]]] = {
    "relative": (1.0, _words(
        "today", "tonight", "yesterday", "tomorrow", "this (?:week|weekend|month|morning)",
        r"last (?:week|weekend|month|night)", "past (?:week|few days|weekend)", "these days",
        "right now", r"this (?:year|season)", "earlier this (?:week|month|year)")),
    "recency": (1.0, _words(
        "recently", "recent", "latest", "newest", "so far", "newly", "currently",
        "as of", "breaking", "ongoing", "just (?:announced|released|launched)")),
    "date": (1.0, re.compile(
        rf"\b(?:(?:{_MONTHS})\.? \d{{1,2}}(?:st|nd|rd|th)?\b|\d{{1,2}} (?:{_MONTHS})\b"
        r"|\d{4}-\d{2}-\d{2}\b|\d{1,2}/\d{1,2}/\d{2,4}\b|q[1-4] \d{4}\b)", re.IGNORECASE)),
    "year": (0.5, re.compile(r"\b(?:19|20)\d{2}\b")),
    "news": (0.5, _words(
        "announced?", "announces", "elected", "resign(?:ed|s)?", "won", "wins", "died",
        "dies", "killed", "launched", "launches", "signed", "unveiled", "reported",
        "confirmed", "arrested", "charged", "sentenced", "indicted", "approved", "banned",
        "released", "declared", "sworn in", "fired", "ousted", "agreed", "struck",
        "hit", "named", "green lit", "greenlit", "passed", "voted", "sued", "filed",
        "acquired", "raised", "cut", "hiked")),
    "event": (0.5, _words(
        "elections?", "earthquakes?", "hurricanes?", "storms?", "wildfires?", "floods?",
        "strikes?", "summit", "verdict", "trial", "ceasefire", "outbreak", "pandemic",
        "war", "invasion", "shooting", "protests?", "scandal", "crisis", "inflation",
        "interest rates?", "stock market", "primary", "referendum", "heatwave",
        "heat wave", "drought", "recall", "merger", "ipo", "tournament", "final",
        "championship", "world cup", "olympics", "box office", "midterms?")),
    "future": (1.0, _words(
        "will soon", "upcoming", r"next (?:week|month|year)", "is set to", "are set to",
        "how soon", "is expected to", "are expected to", "later this (?:week|month|year)")),
    "report": (0.5, _words(
        "according to", "said", "says", "told", "reports?", "officials?", "spokesperson",
        "accused", "claimed", "lawmakers", "authorities", "administration")),
    "new": (0.5, _words("new", "now", "soon", "first-ever", "once again", "will")),
    "history": (-1.0, _words("history", "historical", "historically", "ancient", "medieval",
                             r"centur(?:y|ies)", r"(?:in|during) the (?:1[0-9]|20)\d0s")),
}

#: The default decision threshold on the summed cue weights.
DEFAULT_THRESHOLD = 1.0


@dataclass(frozen=True)
class TimeSignal:
    """The detector's verdict on one query.

    Attributes:
        sensitive: ``score >= threshold``.
        score: Sum of the weights of the cue kinds found.
        cues: The kinds found, in :data:`CUES` order.
    """

    sensitive: bool
    score: float
    cues: tuple[str, ...]


def cue_score(text: str) -> tuple[float, tuple[str, ...]]:
    """The summed weights of the cue kinds in ``text``, and those kinds."""
    found = tuple(kind for kind, (_, pattern) in CUES.items() if pattern.search(text))
    return sum((CUES[kind][0] for kind in found), 0.0), found


def detect(text: str, *, threshold: float = DEFAULT_THRESHOLD) -> TimeSignal:
    """Whether ``text`` is a time-sensitive query, with the score and the cues behind it.

    Example:
        >>> detect("Who won the 2022 election?")
        TimeSignal(sensitive=True, score=1.5, cues=('year', 'news', 'event'))
    """
    score, cues = cue_score(text)
    return TimeSignal(score >= threshold, score, cues)


def fit_threshold(texts: Sequence[str], labels: Sequence[bool]) -> float:
    """The threshold that classifies labelled queries best (accuracy; ties: the lowest).

    Candidates are the distinct scores of the examples plus one above the highest, so the
    result is always a score some example reaches (or "nothing is time-sensitive").

    Raises:
        ValueError: no examples, or a different number of texts and labels.
    """
    if not texts or len(texts) != len(labels):
        raise ValueError(f"fit_threshold needs as many labels as texts (got {len(texts)} "
                         f"texts and {len(labels)} labels), and at least one")
    scores = [cue_score(t)[0] for t in texts]
    candidates = sorted(set(scores)) + [max(scores) + 0.5]
    best, best_correct = candidates[0], -1
    for c in candidates:
        correct = sum((s >= c) == bool(y) for s, y in zip(scores, labels, strict=True))
        if correct > best_correct:
            best, best_correct = c, correct
    return best


_MONTH_NUM = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DATES = re.compile(
    rf"\b(?:(?P<m1>{_MONTHS})\.? (?P<d1>\d{{1,2}})(?:st|nd|rd|th)?,? (?P<y1>\d{{4}})"
    rf"|(?P<d2>\d{{1,2}}) (?P<m2>{_MONTHS}),? (?P<y2>\d{{4}})"
    r"|(?P<y3>\d{4})-(?P<m3>\d{2})-(?P<d3>\d{2}))\b", re.IGNORECASE)


def mentioned_dates(text: str) -> list[date]:
    """Calendar dates written out in ``text`` with their year, in order, without repeats.

    Reads "October 7, 2023", "Oct. 7 2023", "7 October 2023" and "2023-10-07"; impossible
    dates are skipped.

    Example:
        >>> mentioned_dates("between the report on Sept. 26, 2023 and 2023-10-13")
        [datetime.date(2023, 9, 26), datetime.date(2023, 10, 13)]
    """
    out: list[date] = []
    for m in _DATES.finditer(text):
        g = m.groupdict()
        try:
            if g["y3"]:
                found = date(int(g["y3"]), int(g["m3"]), int(g["d3"]))
            else:
                month = (g["m1"] or g["m2"]).lower()[:3]
                found = date(int(g["y1"] or g["y2"]), _MONTH_NUM[month], int(g["d1"] or g["d2"]))
        except ValueError:
            continue
        if found not in out:
            out.append(found)
    return out
