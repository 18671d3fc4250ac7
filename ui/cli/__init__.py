"""The ``pursuit`` command line (Typer): :func:`main` is its entry point.

- :mod:`~pursuit.ui.cli.app`: the commands.
- :mod:`~pursuit.ui.cli.ask`, :mod:`~.evaluation`, :mod:`~.indexing`, :mod:`~.demo`,
  :mod:`~.serving`, :mod:`~.train`: what the bigger commands do.
- :mod:`~pursuit.ui.cli.datasets`: evaluation datasets and the indexes built for them.
- :mod:`~pursuit.ui.cli.output`: what the commands print.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "main": "pursuit.ui.cli.app",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
