"""The check shared by the scripts that join a benchmark measured in consecutive slices.

``bench/rerank_slices.py`` (reranking, claim slices) and ``bench/agent_multihop.py --join``
(the agent, question slices) both accept slices in any order and refuse any that were
measured with other settings or that leave a gap or an overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

#: What names a slice in errors (a path or its text): only ever formatted.
Label = TypeVar("Label")


def consecutive(slices: Sequence[tuple[Label, dict[str, Any]]], *, same: Sequence[str],
                length: Callable[[dict[str, Any]], int], unit: str,
                start: int | None = None) -> tuple[list[tuple[Label, dict[str, Any]]], int]:
    """Order ``slices`` by their ``start`` and check that they form one run.

    Args:
        slices: ``(label, report)`` pairs; the label (a file or its name) names a slice in
            errors and comes back unchanged.
            A report without ``start`` starts at 0.
        same: Report fields every slice must share with the first.
        length: How many items (queries, questions) a report holds.
        unit: The item's name in messages ("query", "question").
        start: Where the first slice must start; None accepts wherever the first one does.

    Returns:
        The slices in order and the position just past the last one.

    Raises:
        ValueError: No slices, a setting that differs, a gap or an overlap.
    """
    if not slices:
        raise ValueError("nothing to join: pass the result files of the slices")
    ordered = sorted(slices, key=lambda s: s[1].get("start", 0))
    first_label, first = ordered[0]
    for label, report in ordered[1:]:
        for field in same:
            if report.get(field) != first.get(field):
                raise ValueError(f"{label}: {field} {report.get(field)!r} differs from "
                                 f"{first.get(field)!r} in {first_label}")
    position = first.get("start", 0) if start is None else start
    for label, report in ordered:
        if report.get("start", 0) != position:
            raise ValueError(f"{label}: slice starts at {unit} {report.get('start', 0)}, "
                             f"expected {position}; slices must follow each other without a "
                             "gap or an overlap")
        position += length(report)
    return ordered, position
