"""Evaluation datasets and the indexes built for them on first use."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.beir import Dataset, read_beir
from pursuit.indexes.errors import IndexError_, PursuitError
from pursuit.indexes.manifest import corpus_hash
from pursuit.retrievers.encoders import SentenceTransformerEncoder
from pursuit.ui.settings import Settings


def load_dataset(path: str | Path, *, split: str = "test") -> Dataset:
    """Read a BEIR-layout dataset folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/``).

    Raises:
        PursuitError: the folder is missing or is not in the BEIR layout.
    """
    folder = Path(path)
    if not (folder / "corpus.jsonl").is_file():
        raise PursuitError(f"{folder} is not a BEIR dataset folder (no corpus.jsonl); "
                           f"pass a folder with corpus.jsonl, queries.jsonl and qrels/{split}.tsv")
    return read_beir(folder, split=split)


def dataset_index(dataset: Dataset, settings: Settings, *, source: str, vectors: bool = True,
                  console: Console | None = None) -> SearchIndex:
    """Open the cached index of ``dataset``'s corpus, building it first if needed.

    The cache key is the dataset name plus its corpus hash, so an edited corpus gets a new
    index and never a stale one.

    Args:
        dataset: The dataset whose corpus is indexed.
        settings: Cache folder, encoder and FAISS factory.
        source: Recorded in the index's manifest.
        vectors: Whether the caller's pipelines read dense vectors. ``False`` builds (or
            opens) the index without them: BM25 only, seconds instead of minutes of
            encoding. ``True`` adds them, with ``settings.encoder``, to a cached index that
            lacks them or holds another encoder's; that happens once, later runs reuse them.
        console: Where to say what is being built.
    """
    digest = corpus_hash(dataset.corpus)[:12]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.name).strip("-") or "dataset"
    path = settings.cache_dir / "indexes" / f"{slug}-{digest}"
    index = None
    if (path / "manifest.json").exists():
        try:
            index = SearchIndex.open(path, vectors=vectors)
        except IndexError_ as exc:
            if console:
                console.print(f"[yellow]rebuilding the cached index: {exc}[/]")
    encoder = SentenceTransformerEncoder(settings.encoder, dtype=settings.dtype) if vectors else None
    if index is None:
        if console:
            what = ("BM25 + dense vectors" if encoder
                    else "BM25 only; vectors come when a pipeline needs them")
            console.print(f"Indexing {len(dataset.corpus):,} documents of {dataset.name} "
                          f"({what}) into {path} (once; later runs reuse it)")
        return SearchIndex.build(dataset.corpus, path, source=source, encoder=encoder,
                                 factory=settings.factory, show_progress=console is not None)
    if encoder is None or index.has_vectors_of(encoder):
        return index
    if console:
        console.print(f"Adding dense vectors ({settings.encoder}) of {index.manifest.n_docs:,} "
                      f"documents to the cached index {path} (once; later runs reuse them)")
    return index.add_vectors(encoder, factory=settings.factory, replace=True,
                             show_progress=console is not None)
