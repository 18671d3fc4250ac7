"""Events: timestamped document vectors grouped by online single-pass clustering.

- :mod:`~pursuit.indexes.events.store`: :class:`EventStore` in memory.
- :mod:`~pursuit.indexes.events.files`: the store on disk, checked against its index.
- :mod:`~pursuit.indexes.events.build`: build, update and open ``INDEX/events``.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "Event": "pursuit.indexes.events.store",
    "EventStore": "pursuit.indexes.events.store",
    "EventStoreError": "pursuit.indexes.events.files",
    "build_event_store": "pursuit.indexes.events.build",
    "open_event_store": "pursuit.indexes.events.build",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
