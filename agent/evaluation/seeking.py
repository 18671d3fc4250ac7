"""Information-seeking metrics (docs/methods.md §7): ISR, ISE and evidence recall at k.

WebLeaper scores a seeking run by how much of what was required it found (ISR) and how
many required targets it covers per action (ISE). For MultiHop-RAG the targets are the
evidence articles, identified by URL.

Undefined cases are ``nan``, never a made-up 0 or 1: a run with nothing required (a
MultiHop-RAG ``null_query``) has no recall, and a run with no actions has no rate. Take
means with :func:`math.fsum` over the defined values (or ``numpy.nanmean``) and report
how many runs were left out.

Example:
    >>> isr({"a", "b", "c", "d"}, {"a", "c", "x"}), ise({"a", "b", "c", "d"}, 8)
    (0.5, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

__all__ = ["evidence_recall_at_k", "ise", "isr"]


def isr(required: set[str], found: set[str]) -> float:
    """Information-seeking recall: ``|required ∩ found| / |required|``.

    Found items that were not required neither help nor hurt.

    Args:
        required: The targets the task needs.
        found: The targets the run found.

    Returns:
        A value in [0, 1]; ``nan`` when ``required`` is empty (nothing to recall).

    Example:
        >>> isr({"x"}, set()), isr(set(), {"x"})
        (0.0, nan)
    """
    if not required:
        return math.nan
    return len(required & found) / len(required)


def ise(required: set[str], actions: int) -> float:
    """Information-seeking efficiency: ``|required| / actions``, required targets per action.

    As WebLeaper defines it, the numerator is the number of required targets, not of those
    found; read it next to :func:`isr`.

    Args:
        required: The targets the task needs.
        actions: Actions the run took (searches, page reads, questions to the user).

    Returns:
        ``0.0`` when nothing is required (and at least one action was taken); ``nan`` when
        ``actions`` is 0 (no rate without actions).

    Raises:
        ValueError: ``actions`` is negative.

    Example:
        >>> ise({"a", "b", "c"}, 2), ise({"a"}, 0)
        (1.5, nan)
    """
    if actions < 0:
        raise ValueError(f"actions must be >= 0, got {actions}")
    if actions == 0:
        return math.nan
    return len(required) / actions


def evidence_recall_at_k(evidence_urls: Collection[str], gathered_urls_ranked: Sequence[str],
                         k: int) -> float:
    """Share of the distinct evidence URLs among the first ``k`` gathered URLs.

    ``k`` counts ranked positions as given, so several chunks of one article take several
    positions (as in MultiHop-RAG's Hits@k over chunks) but count once towards recall.

    Args:
        evidence_urls: The URLs of the gold evidence (duplicates count once).
        gathered_urls_ranked: URLs the run gathered, best first.
        k: Cut-off, at least 1.

    Returns:
        A value in [0, 1]; ``nan`` when there is no evidence (a ``null_query``).

    Raises:
        ValueError: ``k`` is below 1.

    Example:
        >>> evidence_recall_at_k(["u1", "u2"], ["u3", "u1", "u1", "u2"], 3)
        0.5
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    gold = set(evidence_urls)
    if not gold:
        return math.nan
    return len(gold & set(gathered_urls_ranked[:k])) / len(gold)
