"""pursuit: a search agent and retrieval toolkit.

Layers, with dependencies pointing one way only::

    indexes  <-  retrievers  <-  rerankers  <-  agent  <-  ui
"""

__version__ = "0.1.0"
