"""BEIR's identical-id convention in eval and compare: a query's own document is not counted.

The tiny BEIR folder below is built like ArguAna: both queries are corpus documents (same
id, nearly the same text), so BM25 ranks each query's own document first. Its rankings:

* query a1: a1, a5, a2 (relevant: a2)
* query a3: a3, a4, a6 (relevant: a4)

Dropping the query's own document moves the relevant one up a place, so nDCG@10 (one
relevant document of grade 1, ideal DCG 1) is ``1 / log2(rank + 1)`` of its rank.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_runner import run as run_pursuit

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.beir import Dataset, read_beir
from pursuit.indexes.records import Query, Ranking
from pursuit.rerankers.pipelines import pipeline
from pursuit.retrievers.evaluation.batch import run_pipeline
from pursuit.retrievers.evaluation.compare import compare
from pursuit.retrievers.evaluation.identical_ids import drop_identical_ids, excluding_identical_ids
from pursuit.retrievers.evaluation.metrics import evaluate

CORPUS = [
    ("a1", "Nuclear power", "Nuclear power is clean energy: reactors cut carbon emissions."),
    ("a2", "Waste", "Nuclear reactors leave radioactive waste for thousands of years."),
    ("a3", "Uniforms", "School uniforms reduce bullying and help pupils focus."),
    ("a4", "Choice", "Uniforms do not stop bullying; pupils should choose."),
    ("a5", "Wind", "Wind turbines cut carbon emissions without waste."),
    ("a6", "Buses", "School buses carry children."),
]
QUERIES = [("a1", "Nuclear power is clean energy: reactors cut carbon emissions"),
           ("a3", "School uniforms reduce bullying and help pupils focus")]


def ndcg_at(rank: int) -> float:
    """nDCG@10 of a query whose one relevant document sits at ``rank``."""
    return 1 / math.log2(rank + 1)


DROPPED = (ndcg_at(2) + ndcg_at(1)) / 2  # a2 second, a4 first: 0.8155
KEPT = (ndcg_at(3) + ndcg_at(2)) / 2     # a2 third, a4 second: 0.5655
KEPT_TOP2 = (0.0 + ndcg_at(2)) / 2       # bm25%2 keeping a1 loses a2: 0.3155
BM25_WITHOUT_SELF = {"a1": ["a5", "a2"], "a3": ["a4", "a6"]}


def make_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in CORPUS))
    (root / "queries.jsonl").write_text("".join(
        json.dumps({"_id": i, "text": x}) + "\n" for i, x in QUERIES))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\na1\ta2\t1\na3\ta4\t1\n")
    return root


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    return make_beir(tmp_path / "args")


@pytest.fixture
def index(beir: Path, tmp_path: Path) -> SearchIndex:
    return SearchIndex.build(read_beir(beir).corpus, tmp_path / "idx", source=str(beir))


@pytest.fixture
def cli_run(capsys, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    def run(argv: list[str]) -> tuple[int, str, str]:
        return run_pursuit(argv, capsys, monkeypatch, tmp_path)
    return run


def run_lines(path: Path) -> dict[str, list[str]]:
    """Query id -> document ids, in rank order, of a TREC run file."""
    ranked: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        qid, _, doc, *_ = line.split()
        ranked.setdefault(qid, []).append(doc)
    return ranked


def test_eval_drops_the_query_document_on_a_beir_folder(cli_run, beir: Path,  # type: ignore[no-untyped-def]
                                                        index: SearchIndex,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "dropped"
    code, stdout, err = cli_run(["eval", str(beir), "-p", "bm25", "--index", str(index.path),
                                 "--out", str(out), "--json"])
    assert code == 0, err
    result = json.loads(stdout)
    assert result["metrics"]["nDCG@10"] == pytest.approx(DROPPED, abs=1e-12)
    assert result["keep_identical_ids"] is False
    assert run_lines(out / "run.trec") == BM25_WITHOUT_SELF
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["keep_identical_ids"] is False and prov["dataset"]["queries_in_corpus"] == 2
    assert "2 of 2 queries are corpus documents too" in " ".join(err.split())

    kept = tmp_path / "kept"
    code, stdout, err = cli_run(["eval", str(beir), "-p", "bm25", "--index", str(index.path),
                                 "--out", str(kept), "--keep-identical-ids", "--json"])
    assert code == 0, err
    assert json.loads(stdout)["metrics"]["nDCG@10"] == pytest.approx(KEPT, abs=1e-12)
    assert KEPT < DROPPED
    assert run_lines(kept / "run.trec") == {"a1": ["a1", "a5", "a2"], "a3": ["a3", "a4", "a6"]}
    assert json.loads((kept / "provenance.json").read_text())["keep_identical_ids"] is True
    assert "corpus documents too" not in err


def test_a_cut_ranking_keeps_its_depth_after_the_drop(cli_run, beir: Path,  # type: ignore[no-untyped-def]
                                                      index: SearchIndex, tmp_path: Path) -> None:
    code, _, err = cli_run(["eval", str(beir), "-p", "bm25%2", "--index", str(index.path),
                            "--out", str(tmp_path / "top2")])
    assert code == 0, err
    # bm25 searched three deep, so dropping a1 still leaves two documents and finds a2
    assert run_lines(tmp_path / "top2" / "run.trec") == BM25_WITHOUT_SELF
    metrics = json.loads((tmp_path / "top2" / "metrics.json").read_text())["aggregate"]
    assert metrics["nDCG@10"] == pytest.approx(DROPPED, abs=1e-12)


def test_compare_honours_the_convention(cli_run, beir: Path, index: SearchIndex) -> None:  # type: ignore[no-untyped-def]
    argv = ["compare", str(beir), "-p", "all=bm25", "-p", "top2=bm25%2",
            "--index", str(index.path), "--json"]
    code, stdout, err = cli_run(argv)
    assert code == 0, err
    dropped = json.loads(stdout)
    means = {r["system"]: r["measures"]["nDCG@10"]["mean"] for r in dropped["rows"]}
    assert means == pytest.approx({"all": DROPPED, "top2": DROPPED}, abs=1e-12)
    assert dropped["keep_identical_ids"] is False
    assert dropped["rows"][1]["measures"]["nDCG@10"]["p"] == 1.0  # identical per query

    code, stdout, err = cli_run([*argv, "--keep-identical-ids"])
    assert code == 0, err
    kept = json.loads(stdout)
    means = {r["system"]: r["measures"]["nDCG@10"]["mean"] for r in kept["rows"]}
    assert means == pytest.approx({"all": KEPT, "top2": KEPT_TOP2}, abs=1e-12)
    assert kept["keep_identical_ids"] is True


def test_compare_drops_the_query_document_from_saved_runs(cli_run, beir: Path,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    selfish, plain = tmp_path / "selfish.trec", tmp_path / "plain.trec"
    selfish.write_text("a1 Q0 a1 1 9.0 s\na1 Q0 a2 2 5.0 s\na3 Q0 a3 1 9.0 s\na3 Q0 a4 2 5.0 s\n")
    plain.write_text("a1 Q0 a5 1 9.0 p\na1 Q0 a2 2 5.0 p\na3 Q0 a4 1 9.0 p\n")
    argv = ["compare", str(beir), "-r", f"plain={plain}", "-r", f"selfish={selfish}", "--json"]
    for extra, expected in (([], {"plain": DROPPED, "selfish": 1.0}),
                            (["--keep-identical-ids"], {"plain": DROPPED, "selfish": ndcg_at(2)})):
        code, stdout, err = cli_run([*argv, *extra])
        assert code == 0, err
        means = {r["system"]: r["measures"]["nDCG@10"]["mean"]
                 for r in json.loads(stdout)["rows"]}
        assert means == pytest.approx(expected, abs=1e-12)


def test_library_default_follows_the_dataset(beir: Path, index: SearchIndex) -> None:
    stage = pipeline(index, "bm25")
    beir_ds = read_beir(beir)
    assert beir_ds.drop_identical_ids is True
    result = run_pipeline(stage, beir_ds, progress=False, measures=["nDCG@10"])
    assert result.metrics is not None
    assert result.metrics.aggregate["nDCG@10"] == pytest.approx(DROPPED, abs=1e-12)

    # The same data built in code (not a BEIR folder) keeps today's behaviour by default ...
    other = Dataset("args", beir_ds.corpus, beir_ds.queries, beir_ds.qrels)
    kept = run_pipeline(stage, other, progress=False, measures=["nDCG@10"])
    assert kept.metrics is not None and kept.provenance["keep_identical_ids"] is True
    assert kept.metrics.aggregate["nDCG@10"] == pytest.approx(KEPT, abs=1e-12)
    assert kept.rankings[0].doc_ids() == ["a1", "a5", "a2"]
    # ... and takes the option either way.
    forced = run_pipeline(stage, other, progress=False, measures=["nDCG@10"],
                          keep_identical_ids=False)
    assert forced.metrics is not None
    assert forced.metrics.aggregate["nDCG@10"] == pytest.approx(DROPPED, abs=1e-12)
    c = compare({"bm25": stage, "top2": pipeline(index, "bm25%2")}, beir_ds, "bm25",
                measures=["nDCG@10"], keep_identical_ids=True)
    assert c.rows[1].measures["nDCG@10"].mean == pytest.approx(KEPT_TOP2, abs=1e-12)
    assert "not counted (BEIR)" not in c.caption()


@pytest.mark.parametrize("text, depth", [
    ("bm25", 2), ("bm25%2", 2), ("bm25%2 >> bm25", 2), ("bm25%2 >> bm25%1", 1),
    ("0.5*bm25%2 + 0.5*bm25", 2), ("bm25%2 | bm25%3", 2), ("(bm25 | bm25)%2", 2)])
def test_rewritten_pipelines_keep_their_name_and_depth(index: SearchIndex, text: str,
                                                       depth: int) -> None:
    stage = pipeline(index, text)
    clean = excluding_identical_ids(stage)
    assert clean.name == stage.name
    queries = [Query(i, x) for i, x in QUERIES]
    for b, a in zip(stage.batch(queries), clean.batch(queries), strict=True):
        assert b.query.id in b.doc_ids() and a.query.id not in a.doc_ids()
        # BM25 matches three documents per query, two besides the query's own: a cutoff
        # of 2 still holds both, in BM25's order (every pipeline here keeps that order)
        assert a.doc_ids() == BM25_WITHOUT_SELF[a.query.id][:depth]
        assert a.provenance.pipeline == b.provenance.pipeline


def test_evaluate_and_drop_on_plain_rankings() -> None:
    ranking = Ranking.from_scores(Query("a1", "x"), [("a1", 3.0), ("a5", 2.0), ("a2", 1.0)],
                                  pipeline="p")
    qrels = {"a1": {"a2": 1}}
    assert evaluate([ranking], qrels, ["RR@10"]).aggregate == {"RR@10": 1 / 3}
    assert evaluate([ranking], qrels, ["RR@10"],
                    keep_identical_ids=False).aggregate == {"RR@10": 1 / 2}
    assert drop_identical_ids([ranking])[0].doc_ids() == ["a5", "a2"]


def test_sets_without_shared_ids_run_exactly_as_before(tmp_path: Path) -> None:
    # Four documents tie for "tide". bm25%1 searched one deeper would pick among two tied
    # documents by id ("m") instead of the one the index returns first ("z"); no query id
    # is a corpus id here, so the pipeline must run unchanged and rankings stay the same.
    root = tmp_path / "ties"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": i, "text": "tide moon"}) + "\n" for i in ["z", "m", "b"]))
    (root / "queries.jsonl").write_text('{"_id": "x1", "text": "tide"}\n')
    (root / "qrels" / "test.tsv").write_text("x1\tb\t1\n")
    dataset = read_beir(root)
    index = SearchIndex.build(dataset.corpus, tmp_path / "idx", source=str(root))
    stage = pipeline(index, "bm25%1")
    default = run_pipeline(stage, dataset, progress=False)
    kept = run_pipeline(stage, dataset, progress=False, keep_identical_ids=True)
    assert default.provenance["keep_identical_ids"] is False
    assert default.rankings[0].doc_ids() == kept.rankings[0].doc_ids()
    assert excluding_identical_ids(stage).search(Query("x1", "tide")).doc_ids() == ["m"]
    assert stage.search(Query("x1", "tide")).doc_ids() == kept.rankings[0].doc_ids()
