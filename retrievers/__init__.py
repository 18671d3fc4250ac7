"""pursuit.retrievers: the Stage algebra, BM25 / dense retrieval, evaluation."""
