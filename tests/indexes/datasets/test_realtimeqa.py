"""RealTime QA loader: exact counts on the real 2022 weeks, url keys, pooling, malformed files."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from pursuit.indexes.datasets.realtimeqa import (
    Article,
    RealtimeQuestion,
    load_realtimeqa,
    normalise_url,
    pooled_docs,
    realtimeqa_weeks,
)
from pursuit.indexes.errors import FormatError


@pytest.mark.data
def test_counts_of_the_2022_weeks(shared_data):
    root = shared_data / "realtimeqa" / "past" / "2022"
    weeks = realtimeqa_weeks(root)
    assert len(weeks) == 16 and (weeks[0], weeks[-1]) == ("20220617", "20220930")
    qs = load_realtimeqa(root)
    assert len(qs) == 459 and len({q.id for q in qs}) == 459
    assert (min(q.date for q in qs), max(q.date for q in qs)) == (date(2022, 6, 16),
                                                                  date(2022, 9, 30))
    assert sum(len(q.results) for q in qs) == 3222
    assert (sum(len(q.gold) for q in qs), sum(bool(q.gold) for q in qs)) == (200, 160)
    first = qs[0]
    assert (first.id, first.week, first.date, first.answers) == ("20220617_0", "20220617",
                                                                 date(2022, 6, 16), (1,))
    assert first.choices[first.answers[0]] == "“Squid Game”"
    assert first.results[0].published == date(2022, 6, 12)
    assert first.gold[0].url == "https://www.cnn.com/2022/06/12/media/squid-game-season-2/index.html"
    docs = pooled_docs(qs)
    assert len(docs) == 2836 and sum(d.published_at is None for d in docs) == 16
    assert len(pooled_docs(qs, gold=True)) == 2890
    assert len(load_realtimeqa(root, ["20220617", "20220624"])) == 59


def test_normalise_url():
    assert normalise_url("https://www.CNN.com/2022/06/12/x/index.html?utm=1#top") == \
        "cnn.com/2022/06/12/x/index.html"
    assert normalise_url(" http://cnn.com/a/b/ ") == normalise_url("https://www.cnn.com/a/b")


def _q(qid: str, *results: Article) -> RealtimeQuestion:
    return RealtimeQuestion(qid, "20220617", date(2022, 6, 16), "?", ("a", "b"), (0,), "", "", "",
                            "", results, ())


def test_pooling_keeps_the_first_text_and_the_latest_date():
    a1 = Article("https://www.x.com/a/", "A", "first text", ("Ann",), date(2022, 6, 1))
    a2 = Article("http://x.com/a", "A2", "second text", (), date(2022, 6, 3))
    b = Article("https://y.org/b", "B", "undated", (), None)
    docs = pooled_docs([_q("q0", a1, b), _q("q1", a2)])
    assert [(d.id, d.title, d.text, d.published_at) for d in docs] == [
        ("x.com/a", "A", "first text", datetime(2022, 6, 3, tzinfo=UTC)),
        ("y.org/b", "B", "undated", None)]
    assert docs[0].url == "https://www.x.com/a/" and docs[0].metadata == {"authors": ["Ann"]}


def _write(root, week, qa, gcs, gold=()):
    for kind, rows in (("qa", qa), ("gcs", gcs), ("gold", gold)):
        (root / f"{week}_{kind}.jsonl").write_text(
            "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


QA = {"question_id": "w_0", "question_date": "2022/06/16", "question_sentence": "Q?",
      "choices": ["x", "y"], "answer": ["1"], "evidence": "", "question_source": "CNN",
      "question_url": "u"}
GCS = {"question_id": "w_0", "search_time": "2022/06/17/16:34",
       "search_result": [{"url": "https://a.com/1", "title": "T", "text": "t", "authors": [],
                          "publish_date": "2022/06/15"}]}


def test_malformed_files_name_file_line_and_field(tmp_path):
    _write(tmp_path, "20220617", [QA], [GCS])
    assert [q.id for q in load_realtimeqa(tmp_path)] == ["w_0"]
    qa = tmp_path / "20220617_qa.jsonl"
    cases = [
        ([QA, "{not json"], [GCS], f"{qa}:2: invalid JSON"),
        ([{**QA, "answer": ["2"]}], [GCS], f"{qa}:1: answer [2] is not a valid index into 2 choices"),
        ([{**QA, "question_date": "June 16"}], [GCS],
         f"{qa}:1: field \"question_date\" must be a date YYYY/MM/DD, got 'June 16'"),
        ([QA], [{**GCS, "question_id": "other"}],
         f"{qa}:1: question w_0 has no entry in 20220617_gcs.jsonl"),
        ([QA], [{**GCS, "search_result": "none"}],
         f"{tmp_path / '20220617_gcs.jsonl'}:1: field \"search_result\" must be a list"),
    ]
    for qa_rows, gcs_rows, message in cases:
        _write(tmp_path, "20220617", qa_rows, gcs_rows)
        with pytest.raises(FormatError) as err:
            load_realtimeqa(tmp_path)
        assert str(err.value).startswith(message), str(err.value)
    _write(tmp_path, "20220617", [QA], [GCS])
    (tmp_path / "20220617_gold.jsonl").unlink()
    with pytest.raises(FormatError, match="20220617_gold.jsonl: file not found"):
        load_realtimeqa(tmp_path)
