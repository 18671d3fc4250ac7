"""pursuit.indexes: records, formats, the document store, BM25 and vector indexes."""

from pursuit.indexes.records import Doc, Hit, Provenance, Query, Ranking

__all__ = ["Doc", "Hit", "Provenance", "Query", "Ranking"]
