"""Event-aware retrieval: time-sensitive queries expanded with their current events.

- :mod:`~pursuit.retrievers.events.retriever`: :class:`EventAwareRetriever`.
- :mod:`~pursuit.retrievers.events.timesense`: is a query time-sensitive?
- :mod:`~pursuit.retrievers.events.query_fusion`: a query vector fused with its events' vectors.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "EventAwareRetriever": "pursuit.retrievers.events.retriever",
    "detect": "pursuit.retrievers.events.timesense",
    "EventFusion": "pursuit.retrievers.events.query_fusion",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
