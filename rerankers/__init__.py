"""pursuit.rerankers."""
