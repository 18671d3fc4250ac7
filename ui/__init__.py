"""pursuit.ui: the ``pursuit`` command and the web chat.

- :mod:`pursuit.ui.cli`: the command line (index, search, ask, eval, compare, serve, demo, train).
- :mod:`pursuit.ui.web`: the web chat's server, API and page.
- :mod:`~pursuit.ui.settings`: settings, the only place pursuit reads environment variables.
- :mod:`~pursuit.ui.models`: the models both load, chosen by settings.

The command line may start the web server; the web package never imports the command line.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "Settings": "pursuit.ui.settings",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
