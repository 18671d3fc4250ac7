"""The web chat: the page and its API on one origin.

- :mod:`~pursuit.ui.web.server`: :func:`create_app`, the FastAPI application.
- :mod:`~pursuit.ui.web.api`: request bodies, the token and size guard, error bodies.
- :mod:`~pursuit.ui.web.runs`: agent runs streamed as server-sent events.
- :mod:`~pursuit.ui.web.chatagent`: the agent behind the chat, loaded in the background.
- :mod:`~pursuit.ui.web.conversations`, :mod:`~.history`: conversations kept in SQLite.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "create_app": "pursuit.ui.web.server",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
