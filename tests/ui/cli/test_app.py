"""The ``pursuit`` command line, run in-process the way a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "tides.md").write_text("# Tides\nThe moon pulls the ocean and makes the tide.\n")
    (folder / "lava.txt").write_text("Lava flows from a volcano during an eruption.\n")
    (folder / "snake.html").write_text("<html><head><title>Snakes</title></head>"
                                       "<body><p>A python is a large snake.</p></body></html>")
    return folder


@pytest.fixture
def cli_run(capsys, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    return lambda argv: run(argv, capsys, monkeypatch, tmp_path)


def test_index_search_add_delete(cli_run, notes: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    idx = str(tmp_path / "idx")
    code, out, _ = cli_run(["index", str(notes), "--out", idx, "--no-dense", "--json"])
    assert code == 0
    summary = json.loads(out)
    assert summary["n_docs"] == 3 and summary["components"] == ["bm25", "store"]

    code, out, _ = cli_run(["search", "volcano eruption", "--index", idx, "-p", "bm25", "--json"])
    hits = json.loads(out)["hits"]
    assert code == 0 and [h["id"] for h in hits] == ["lava.txt"]
    assert hits[0]["text"].startswith("Lava flows") and json.loads(out)["pipeline"] == "bm25"

    more = tmp_path / "more"
    more.mkdir()
    (more / "geysers.md").write_text("# Geysers\nA geyser erupts hot water, like a volcano.\n")
    code, out, _ = cli_run(["add", idx, str(more), "--json"])
    assert code == 0 and json.loads(out)["n_docs"] == 4
    assert json.loads(out)["components"] == ["bm25", "store"]  # still no vectors
    code, out, _ = cli_run(["search", "volcano", "--index", idx, "-p", "bm25", "--json"])
    assert sorted(h["id"] for h in json.loads(out)["hits"]) == ["geysers.md", "lava.txt"]

    code, out, _ = cli_run(["delete", idx, "lava.txt", "--json"])
    assert code == 0 and json.loads(out)["n_docs"] == 3
    code, out, _ = cli_run(["search", "volcano", "--index", idx, "-p", "bm25", "--json"])
    assert [h["id"] for h in json.loads(out)["hits"]] == ["geysers.md"]


def test_readable_search_output_shows_titles(cli_run, notes: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    idx = str(tmp_path / "idx")
    cli_run(["index", str(notes), "--out", idx, "--no-dense"])
    code, out, _ = cli_run(["search", "python snake", "--index", idx, "-p", "bm25"])
    assert code == 0
    assert "1. Snakes  snake.html" in out and "A python is a large snake." in out


def test_published_before_filters_json_records(cli_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    records = tmp_path / "news.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in [
        {"url": "u1", "title": "Vote", "body": "election results are in", "published_at": "2023-10-01"},
        {"url": "u2", "title": "Vote again", "body": "election results recounted",
         "published_at": "2023-12-01"},
    ]) + "\n")
    idx = str(tmp_path / "news")
    code, _, err = cli_run(["index", str(records), "--out", idx, "--no-dense",
                            "--field", "text=body", "--field", "id=url"])
    assert code == 0, err
    code, out, _ = cli_run(["search", "election results", "--index", idx, "-p", "bm25",
                            "--published-before", "2023-11-01", "--json"])
    assert [h["id"] for h in json.loads(out)["hits"]] == ["u1"]


def _tiny_dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in [
        {"_id": "d1", "title": "Tides", "text": "The moon makes the tide."},
        {"_id": "d2", "title": "Lava", "text": "A volcano erupts lava."},
        {"_id": "d3", "title": "Snakes", "text": "A python is a snake, not a volcano."},
    ]) + "\n")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "volcano lava"}\n'
                                        '{"_id": "q2", "text": "moon tide"}\n')
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td1\t1\n")
    return root


def test_eval_writes_run_metrics_and_provenance(cli_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = _tiny_dataset(tmp_path / "tiny")
    idx = str(tmp_path / "idx")
    assert cli_run(["index", str(data), "--out", idx, "--no-dense"])[0] == 0
    out_dir = tmp_path / "run"
    code, out, err = cli_run(["eval", str(data), "-p", "bm25", "--index", idx,
                              "--out", str(out_dir), "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["queries"] == 2 and result["metrics"]["nDCG@10"] == 1.0
    assert sorted(p.name for p in out_dir.iterdir()) == ["metrics.json", "provenance.json",
                                                         "run.trec"]
    assert (out_dir / "run.trec").read_text().splitlines()[0].split()[:4] == ["q1", "Q0", "d2", "1"]
    assert json.loads((out_dir / "provenance.json").read_text())["pipeline"] == "bm25"

    code, out, err = cli_run(["compare", str(data), "-p", "a=bm25", "-p", "b=bm25%1",
                              "--index", idx, "--json"])
    assert code == 0, err
    assert json.loads(out)["baseline"] == "a"

    code, out, err = cli_run(["eval", str(data), "-p", "0.5*bm25 + 0.5*dense", "--index", idx])
    assert code == 1 and out == ""  # a given index is the user's: named, not changed
    assert f"add them with: pursuit add-vectors {idx}" in " ".join(err.split())
    assert not (Path(idx) / "dense").exists()


def test_compare_saved_runs_without_an_index(cli_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = _tiny_dataset(tmp_path / "tiny")
    good, bad, half = tmp_path / "good.trec", tmp_path / "bad.trec", tmp_path / "half.trec"
    good.write_text("q1 Q0 d2 1 2.0 g\nq1 Q0 d1 2 1.0 g\nq2 Q0 d1 1 3.0 g\n")
    bad.write_text("q1 Q0 d1 1 2.0 b\nq1 Q0 d2 2 1.0 b\nq2 Q0 d3 1 3.0 b\n")
    half.write_text("q1 Q0 d2 1 2.0 h\nq9 Q0 d1 1 1.0 h\n")   # no q2; q9 is not in the data
    code, out, err = cli_run(["compare", str(data), "-r", f"bad={bad}", "-r", f"good={good}",
                              "-r", f"half={half}", "--json"])
    assert code == 0, err
    result = json.loads(out)
    ndcg = {row["system"]: row["measures"]["nDCG@10"]["mean"] for row in result["rows"]}
    assert result["baseline"] == "bad" and result["queries"] == 2
    # bad: d2 at rank 2 for q1 (1/log2(3) = 0.6309), nothing for q2; half: q1 right, q2 missing
    assert ndcg == pytest.approx({"bad": 0.6309 / 2, "good": 1.0, "half": 0.5}, abs=1e-4)
    assert "run 'half' has no ranking for 1 of 2 judged queries (first: q2)" in err
    assert not (tmp_path / "cache").exists()  # no index was built for runs alone


@pytest.mark.parametrize("argv, message", [
    (["-r", "a=RUN"], "compare needs at least two systems"),
    (["-r", "a=RUN", "-r", "a=RUN"], "--run names 'a' twice"),
    (["-r", "a=RUN", "-p", "a=bm25"], "system name 'a' is given twice"),
    (["-r", "a=RUN", "-r", "b=RUN", "--baseline", "c"], "--baseline 'c' is not one of"),
    (["-r", "a=RUN", "-r", "b=nowhere.trec"], "run file not found"),
    (["-r", "a=RUN", "-r", "b=OTHER"], "run 'b' (OTHER) ranks none of the 2 queries"),
])
def test_compare_run_errors(cli_run, tmp_path: Path, argv: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    data = _tiny_dataset(tmp_path / "tiny")
    run, other = tmp_path / "a.trec", tmp_path / "other.trec"
    run.write_text("q1 Q0 d2 1 2.0 a\n")
    other.write_text("x1 Q0 d2 1 2.0 o\n")
    argv = [a.replace("RUN", str(run)).replace("OTHER", str(other)) for a in argv]
    code, out, err = cli_run(["compare", str(data), *argv])
    assert code == 1 and out == ""
    assert message.replace("OTHER", str(other)) in " ".join(err.split())


@pytest.mark.parametrize("argv, message", [
    (["index", "no/such/place", "--out", "x"], "no/such/place"),
    (["search", "q", "--index", "no-index-here"], "no index at no-index-here"),
    (["search", "q", "--index", "IDX", "-p", "bm25 >>"], "column"),
    (["search", "q", "--index", "IDX", "-p", "dense"],
     "has no dense vectors, so 'dense' cannot run; add them with: pursuit add-vectors IDX"),
    (["search", "q", "--index", "IDX", "-p", "bm2"], "bm25"),
])
def test_failures_exit_1_with_a_message(cli_run, notes: Path, tmp_path: Path, argv, message) -> None:  # type: ignore[no-untyped-def]
    idx = str(tmp_path / "idx")
    cli_run(["index", str(notes), "--out", idx, "--no-dense"])
    code, out, err = cli_run([a.replace("IDX", idx) for a in argv])
    assert code == 1 and out == ""
    assert err.startswith("error: ") and message.replace("IDX", idx) in err


def _files(path: Path) -> dict[str, tuple[int, int]]:
    """Each file under ``path`` -> (inode, mtime in ns): any rewrite changes one of them."""
    return {str(f.relative_to(path)): (f.stat().st_ino, f.stat().st_mtime_ns)
            for f in sorted(path.rglob("*")) if f.is_file()}


def _components(index: Path) -> list[str]:
    return sorted(json.loads((index / "manifest.json").read_text())["components"])


@pytest.mark.model
def test_eval_builds_only_what_its_pipelines_read(cli_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = _tiny_dataset(tmp_path / "tiny")
    code, out, err = cli_run(["eval", str(data), "-p", "bm25", "--json"])
    assert code == 0, err
    assert json.loads(out)["metrics"]["nDCG@10"] == 1.0
    [cached] = [p for p in (tmp_path / "cache" / "indexes").iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in cached.iterdir()) == ["bm25", "docs.sqlite", "manifest.json"]
    assert _components(cached) == ["bm25", "store"]
    assert "(BM25 only; vectors come when a pipeline needs them)" in " ".join(err.split())

    code, out, err = cli_run(["compare", str(data), "-p", "a=bm25", "-p", "b=bm25%1", "--json"])
    assert code == 0, err
    assert _components(cached) == ["bm25", "store"] and "Indexing" not in err

    code, out, err = cli_run(["eval", str(data), "-p", "dense", "--json"])
    assert code == 0, err
    assert json.loads(out)["metrics"]["nDCG@10"] == 1.0
    assert "Adding dense vectors (all-MiniLM-L6-v2) of 3 documents" in " ".join(err.split())
    assert _components(cached) == ["bm25", "dense", "store"]
    # no staging folder left, only the writers' lock file
    assert sorted(p.name for p in cached.parent.iterdir()) == [f".{cached.name}.lock",
                                                               cached.name]
    vectors = _files(cached / "dense")

    code, out, err = cli_run(["compare", str(data), "-p", "hybrid=0.5*bm25 + 0.5*dense",
                              "-p", "bm25=bm25", "--json"])
    assert code == 0, err
    assert "Adding" not in err and "Indexing" not in err
    assert _files(cached / "dense") == vectors  # reused, not encoded again


@pytest.mark.model
def test_index_without_vectors_then_add_vectors(cli_run, notes: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    idx = tmp_path / "idx"
    code, out, err = cli_run(["index", str(notes), "--out", str(idx), "--no-vectors", "--json"])
    assert code == 0, err
    assert json.loads(out)["components"] == ["bm25", "store"]
    assert not (idx / "dense").exists()
    code, out, err = cli_run(["search", "snake", "--index", str(idx), "-p", "0.5*bm25 + 0.5*dense"])
    assert code == 1 and f"add them with: pursuit add-vectors {idx}" in " ".join(err.split())

    code, out, err = cli_run(["add-vectors", str(idx), "--json"])
    assert code == 0, err
    assert json.loads(out)["components"] == ["bm25", "dense", "store"]
    manifest = json.loads((idx / "manifest.json").read_text())
    assert manifest["components"]["dense"]["vectors"]["count"] == 3
    code, out, err = cli_run(["search", "a large reptile", "--index", str(idx), "-p", "dense",
                              "--json"])
    assert code == 0, err
    assert json.loads(out)["hits"][0]["id"] == "snake.html"

    vectors = _files(idx / "dense")
    code, out, err = cli_run(["add-vectors", str(idx)])
    assert code == 0 and "Encoding" not in err and "Index holds dense vectors of 3" in err
    assert _files(idx / "dense") == vectors

    more = tmp_path / "more"
    more.mkdir()
    (more / "geysers.md").write_text("# Geysers\nA geyser erupts hot water, like a volcano.\n")
    assert cli_run(["add", str(idx), str(more)])[0] == 0  # encoded with the index's encoder
    code, out, err = cli_run(["search", "hot spring spouting water", "--index", str(idx),
                              "-p", "dense", "--json"])
    assert code == 0, err
    assert json.loads(out)["hits"][0]["id"] == "geysers.md"
