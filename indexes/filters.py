"""Metadata filters that retrieval applies before ranking, never after truncation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Doc


class DateError(PursuitError, ValueError):
    """A date the user wrote that is not one."""


def as_utc(value: datetime | str) -> datetime:
    """Parse an ISO date or datetime; naive values are taken as UTC.

    Example:
        >>> as_utc("2023-11-27").isoformat()
        '2023-11-27T00:00:00+00:00'
    """
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise DateError(f"{value!r} is not a date; write it as YYYY-MM-DD (or an ISO "
                            "date and time, e.g. 2023-11-27T09:30)") from None
    else:
        dt = value
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True)
class DocFilter:
    """Which documents a search may return.

    The time window is half-open: ``published_after <= published_at < published_before``.
    When either bound is set, documents with no publication date are excluded, because
    nothing proves they respect the bound.

    Attributes:
        published_before: Exclusive upper bound on ``Doc.published_at``.
        published_after: Inclusive lower bound on ``Doc.published_at``.
        metadata: Field -> required value; a list value means "any of these".
    """

    published_before: datetime | None = None
    published_after: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("published_before", "published_after"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value))

    @property
    def is_empty(self) -> bool:
        """True when the filter lets every document through."""
        return self.published_before is None and self.published_after is None and not self.metadata

    def accepts(self, doc: Doc) -> bool:
        """Whether ``doc`` passes the filter."""
        if self.published_before is not None or self.published_after is not None:
            if doc.published_at is None:
                return False
            if self.published_before is not None and doc.published_at >= self.published_before:
                return False
            if self.published_after is not None and doc.published_at < self.published_after:
                return False
        for key, want in self.metadata.items():
            have = doc.metadata.get(key)
            if isinstance(want, list | tuple | set | frozenset):
                if have not in want:
                    return False
            elif have != want:
                return False
        return True
