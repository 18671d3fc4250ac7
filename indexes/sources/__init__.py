"""Where documents come from: what ``pursuit index SOURCE`` can read.

- :mod:`~pursuit.indexes.sources.corpus`: :func:`load_corpus`, a named source to documents.
- :mod:`~pursuit.indexes.sources.jsonrecords`: JSON lists and JSON Lines, with a field map.
- :mod:`~pursuit.indexes.sources.folders`: a folder of text, Markdown and HTML files.
- :mod:`~pursuit.indexes.sources.pydocs`: the demo corpus, Python's own documentation.
"""

from pursuit import lazy_exports

_EXPORTS = {
    "load_corpus": "pursuit.indexes.sources.corpus",
    "FieldMap": "pursuit.indexes.sources.jsonrecords",
    "read_records": "pursuit.indexes.sources.jsonrecords",
    "read_folder": "pursuit.indexes.sources.folders",
    "python_docs": "pursuit.indexes.sources.pydocs",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
