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


def dataset_index(dataset: Dataset, settings: Settings, *, source: str,
                  console: Console | None = None) -> SearchIndex:
    """Open the cached index of ``dataset``'s corpus, building it first if needed.

    The cache key is the dataset name plus its corpus hash, so an edited corpus gets a new
    index and never a stale one.
    """
    digest = corpus_hash(dataset.corpus)[:12]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.name).strip("-") or "dataset"
    path = settings.cache_dir / "indexes" / f"{slug}-{digest}"
    encoder = SentenceTransformerEncoder(settings.encoder, dtype=settings.dtype)
    if (path / "manifest.json").exists():
        try:
            return SearchIndex.open(path, encoder=encoder)
        except IndexError_ as exc:
            if console:
                console.print(f"[yellow]rebuilding the cached index: {exc}[/]")
    if console:
        console.print(f"Indexing {len(dataset.corpus):,} documents of {dataset.name} "
                      f"into {path} (once; later runs reuse it)")
    return SearchIndex.build(dataset.corpus, path, source=source, encoder=encoder,
                             factory=settings.factory, show_progress=console is not None)
