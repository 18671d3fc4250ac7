"""BM25 over the document store's rows, on bm25s's precomputed sparse score matrix.

bm25s computes every (document, term) BM25 contribution at build time into a sparse
matrix; a query's scores are then a sparse sum. We keep bm25s's files and add ``rows.npy``
(matrix position -> store row) and ``bm25.json`` (analyzer and parameters). Search
multiplies a whole batch of queries against the matrix at once (scipy), so cost grows with
the postings touched, not with a Python loop per query.

The default analyzer (lowercase, numbers like ``1.5`` kept whole, Lucene's 33 English
stopwords, Snowball English stemming) with ``k1=0.9, b=0.4`` and Lucene's idf follows
Anserini's flat BM25 (its SciFact score beside Anserini's: ``bench/bm25.py``, BENCHMARKS.md).

Example:
    >>> index = BM25Index.build(["tides follow the moon", "rain"], np.array([0, 1]))
    >>> rows, scores = index.search(["moon tides"], k=2)
    >>> rows.tolist()
    [[0, -1]]
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import scipy.sparse as sp
import Stemmer

from pursuit.indexes.errors import IndexError_

FORMAT_VERSION = 1
CONFIG_NAME = "bm25.json"
ROWS_NAME = "rows.npy"
TOKEN_PATTERN = r"\d+(?:[.,]\d+)+|\w+"
STOPWORD_SETS = {"en": bm25s.stopwords.STOPWORDS_EN, "en_plus": bm25s.stopwords.STOPWORDS_EN_PLUS}
# Queries per sparse product: bounds the memory of the (queries x documents) result.
QUERY_CHUNK = 256


class Analyzer:
    """Text -> index terms: lowercase, regex tokens, stopwords dropped, stemmed.

    Args:
        stemmer: A PyStemmer algorithm name (``"english"``, ``"porter"``) or ``None``.
        stopwords: ``"en"`` (Lucene's list), ``"en_plus"``, a list of words, or ``None``.
        pattern: Regular expression whose matches are the tokens.
    """

    def __init__(self, stemmer: str | None = "english", stopwords: str | Sequence[str] | None = "en",
                 pattern: str = TOKEN_PATTERN) -> None:
        if isinstance(stopwords, str):
            if stopwords not in STOPWORD_SETS:
                raise ValueError(f"unknown stopwords {stopwords!r}; choose one of "
                                 f"{', '.join(STOPWORD_SETS)}, a list of words, or None")
            stopwords = STOPWORD_SETS[stopwords]
        self.stopwords = sorted(set(stopwords or ()))
        self.stemmer_name, self.pattern = stemmer, pattern
        if stemmer is not None and stemmer not in Stemmer.algorithms():
            raise ValueError(f"unknown stemmer {stemmer!r}; choose one of PyStemmer's "
                             f"{', '.join(Stemmer.algorithms())}, or None")
        self._stemmer = Stemmer.Stemmer(stemmer) if stemmer else None
        self._regex = re.compile(pattern)
        self._stop = frozenset(self.stopwords)
        # Stemming is the slow step; each distinct word is stemmed once.
        self._stems: dict[str, str] = {}

    def __call__(self, text: str) -> list[str]:
        """The terms of one text, in order."""
        stems, out = self._stems, []
        for word in self._regex.findall(text.lower()):
            if word in self._stop:
                continue
            term = stems.get(word)
            if term is None:
                term = self._stemmer.stemWord(word) if self._stemmer else word
                stems[word] = term
            out.append(term)
        return out

    @property
    def config(self) -> dict[str, Any]:
        """What rebuilds this analyzer (saved in ``bm25.json``)."""
        return {"stemmer": self.stemmer_name, "stopwords": self.stopwords, "pattern": self.pattern}


def _damaged(path: Path, why: str) -> IndexError_:
    # An index directory holds the BM25 folder as DIR/bm25, so DIR is the folder's parent.
    folder = path.parent if path.name == CONFIG_NAME else path
    return IndexError_(f"{path}: {why}; rebuild the index with: "
                       f"pursuit index SOURCE --out {folder.parent}")


class BM25Index:
    """A BM25 index whose documents are store rows.

    Build with :meth:`build` or open with :meth:`load`; query with :meth:`search` and
    :meth:`score`.
    """

    def __init__(self, model: bm25s.BM25, rows: np.ndarray, analyzer: Analyzer) -> None:
        self.model, self.rows, self.analyzer = model, np.asarray(rows, dtype=np.int64), analyzer
        s = model.scores
        # (documents x terms) in CSC is (terms x documents) in CSR: a query batch's scores
        # are one sparse product. The transpose shares bm25s's (possibly mmapped) arrays.
        self._term_doc = sp.csc_matrix((s["data"], s["indices"], s["indptr"]),
                                       shape=(s["num_docs"], len(s["indptr"]) - 1)).T.tocsr(copy=False)
        self._pos: np.ndarray | None = None

    @classmethod
    def build(cls, texts: Sequence[str], rows: np.ndarray, *, k1: float = 0.9, b: float = 0.4,
              method: str = "lucene", idf_method: str | None = None,
              stemmer: str | None = "english", stopwords: str | Sequence[str] | None = "en",
              pattern: str = TOKEN_PATTERN, show_progress: bool = False) -> BM25Index:
        """Index ``texts``; ``rows[i]`` is the store row of ``texts[i]``.

        Args:
            texts: Document texts (use ``Doc.contents()``: title and text).
            rows: Store rows, one per text, distinct.
            k1, b: BM25 parameters.
            method: bm25s's term-frequency variant: ``lucene``, ``robertson``, ``atire``,
                ``bm25l``, ``bm25+``.
            idf_method: bm25s's idf variant; ``None`` follows ``method``.
            stemmer, stopwords, pattern: The :class:`Analyzer`.
            show_progress: Show bm25s's progress bars.

        Example:
            >>> index = BM25Index.build([d.contents() for d in docs], rows)  # doctest: +SKIP
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.shape != (len(texts),):
            raise ValueError(f"got {len(texts)} texts but rows of shape {rows.shape}; "
                             "give one store row per text")
        if len(np.unique(rows)) != len(rows):
            raise ValueError("rows must be distinct: each text is one store row")
        if len(texts) == 0:
            raise ValueError("cannot build a BM25 index of no documents")
        analyzer = Analyzer(stemmer, stopwords, pattern)
        model = bm25s.BM25(k1=k1, b=b, method=method, idf_method=idf_method)
        model.index([analyzer(t) for t in texts], show_progress=show_progress)
        return cls(model, rows, analyzer)

    @property
    def config(self) -> dict[str, Any]:
        """Parameters and analyzer, as saved in ``bm25.json``."""
        m = self.model
        return {"format_version": FORMAT_VERSION, "k1": m.k1, "b": m.b, "method": m.method,
                "idf_method": m.idf_method, "n_docs": len(self.rows),
                "bm25s_version": bm25s.__version__, **self.analyzer.config}

    def __len__(self) -> int:
        return len(self.rows)

    def save(self, path: str | Path) -> None:
        """Write the index as a folder: bm25s's files, ``rows.npy`` and ``bm25.json``."""
        path = Path(path)
        self.model.save(path, show_progress=False)
        np.save(path / ROWS_NAME, self.rows)
        # Written last: a folder without it is an unfinished save.
        (path / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True) -> BM25Index:
        """Open a saved index; with ``mmap`` the score arrays stay on disk, paged in on use.

        Raises:
            IndexError_: A file is missing or damaged, or the format is another version.
        """
        path = Path(path)
        cfg_path = path / CONFIG_NAME
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as e:
            raise _damaged(cfg_path, f"missing or not valid JSON ({e.__class__.__name__})") from e
        if not isinstance(cfg, dict) or cfg.get("format_version") != FORMAT_VERSION:
            raise _damaged(cfg_path, f"BM25 format version is not {FORMAT_VERSION}")
        try:
            analyzer = Analyzer(cfg["stemmer"], list(cfg["stopwords"]), cfg["pattern"])
            rows = np.load(path / ROWS_NAME)
            model = bm25s.BM25.load(path, mmap=mmap, show_progress=False)
            index = cls(model, rows, analyzer)
        except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
            raise _damaged(path, f"damaged BM25 index ({e})") from e
        if len(index.rows) != cfg["n_docs"] or index._term_doc.shape[1] != cfg["n_docs"]:
            raise _damaged(path, f"holds {index._term_doc.shape[1]} documents and "
                                 f"{len(index.rows)} rows but {CONFIG_NAME} says {cfg['n_docs']}")
        return index

    # Querying -----------------------------------------------------------------
    def _query_matrix(self, queries: Sequence[str]) -> sp.csr_matrix:
        """(queries x terms) counts; a repeated query term counts again, as in bm25s."""
        vocab = self.model.vocab_dict
        ptr, cols = [0], []
        for q in queries:
            cols += [vocab[t] for t in self.analyzer(q) if t in vocab]
            ptr.append(len(cols))
        data = np.ones(len(cols), dtype=np.float32)
        return sp.csr_matrix((data, np.array(cols, dtype=np.int64), np.array(ptr)),
                             shape=(len(queries), self._term_doc.shape[0]))

    def _positions(self, rows: np.ndarray) -> np.ndarray:
        """Matrix positions of store rows; -1 for rows this index does not hold."""
        if self._pos is None:
            pos = np.full(int(self.rows.max()) + 1, -1, dtype=np.int64)
            pos[self.rows] = np.arange(len(self.rows))
            self._pos = pos
        out = np.full(len(rows), -1, dtype=np.int64)
        inside = (rows >= 0) & (rows < len(self._pos))
        out[inside] = self._pos[rows[inside]]
        return out

    def search(self, queries: Sequence[str], k: int, mask: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` store rows per query, best first (ties: lower row first).

        Only documents with a positive score come back, and never one whose row is False in
        ``mask``; the rest of each line is padded with row -1 and score 0.

        Args:
            queries: Query texts.
            k: Depth.
            mask: Boolean array over store rows (``DocStore.mask``), covering every row of
                this index; ``None`` allows all.

        Returns:
            ``(rows, scores)``: int64 and float32 arrays of shape ``(len(queries), k)``.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        allowed = None
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.ndim != 1 or len(mask) <= int(self.rows.max()):
                raise ValueError(f"mask has shape {mask.shape} but this index holds rows up to "
                                 f"{int(self.rows.max())}; pass DocStore.mask() of its store")
            allowed = mask[self.rows]
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.zeros((len(queries), k), dtype=np.float32)
        for lo in range(0, len(queries), QUERY_CHUNK):
            hits = (self._query_matrix(queries[lo:lo + QUERY_CHUNK]) @ self._term_doc).tocsr()
            # Lucene and ATIRE idfs are positive, so usually nothing needs dropping.
            all_positive = hits.nnz == 0 or hits.data.min() > 0
            for i in range(hits.shape[0]):
                a, z = hits.indptr[i], hits.indptr[i + 1]
                pos, sc = hits.indices[a:z], hits.data[a:z]
                if allowed is not None or not all_positive:
                    keep = sc > 0 if allowed is None else (sc > 0) & allowed[pos]
                    pos, sc = pos[keep], sc[keep]
                if len(sc) > k:
                    # Everything tied with the k-th score stays in, so ties cut by row.
                    kth = np.partition(sc, len(sc) - k)[len(sc) - k]
                    pos, sc = pos[sc >= kth], sc[sc >= kth]
                rws = self.rows[pos]
                order = np.lexsort((rws, -sc))[:k]
                out_rows[lo + i, :len(order)] = rws[order]
                out_scores[lo + i, :len(order)] = sc[order]
        return out_rows, out_scores

    def score(self, query: str, rows: np.ndarray) -> np.ndarray:
        """BM25 scores (float32) of ``query`` for the given store rows; 0 for rows not indexed."""
        rows = np.asarray(rows, dtype=np.int64)
        full = (self._query_matrix([query]) @ self._term_doc).toarray()[0]
        pos = self._positions(rows)
        return np.where(pos >= 0, full[np.maximum(pos, 0)], 0).astype(np.float32)
