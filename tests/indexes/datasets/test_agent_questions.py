"""Agent evaluation data: ClariQ, InteractComp and MultiHop-RAG loaders on real and broken files.

InteractComp's plaintext must never be committed, so its exact values are checked through
SHA-256 digests rather than as text.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from pursuit.indexes.datasets.agent_questions import (
    ClariqFacet,
    Evidence,
    InteractTask,
    load_clariq,
    load_interactcomp,
    load_multihop_queries,
    load_question_bank,
)
from pursuit.indexes.errors import FormatError

HEADER = ("topic_id\tinitial_request\ttopic_desc\tclarification_need\tfacet_id\tfacet_desc\t"
          "question_id\tquestion\tanswer\n")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@pytest.mark.data
def test_clariq_counts_and_fields(shared_data: Path) -> None:
    root = shared_data / "clariq"
    dev, train = load_clariq(root, "dev"), load_clariq(root, "train")
    assert (len(dev), sum(len(t.facets) for t in dev)) == (50, 163)
    assert (len(train), sum(len(t.facets) for t in train)) == (187, 638)
    assert Counter(t.need for t in dev) == {1: 4, 2: 21, 3: 16, 4: 9}
    assert Counter(t.need for t in train) == {1: 25, 2: 74, 3: 62, 4: 26}
    first = dev[0]
    assert (first.topic_id, first.request, first.need) == (
        "101", "Find me information about the Ritz Carlton Lake Las Vegas.", 2)
    assert [f.facet_id for f in first.facets] == ["F0010", "F0011", "F0012", "F0013"]
    assert len(first.questions) == 14 and "Q00001" not in first.questions
    assert first.questions["Q00697"] == "are you looking for a specific web site"
    assert first.facets[0].answers["Q00697"] == "yes for the ritz carlton resort at lake las vegas"
    # Topic 12 answers Q00811 twice under F0085: the first answer is kept.
    djs = next(t for t in train if t.topic_id == "12")
    assert djs.facets[0].answers["Q00811"] == "i am looking for djs who specialize in hip hop music"
    bank = load_question_bank(root)
    assert len(bank) == 3941 and bank["Q00001"] == ""
    assert bank["Q03941"] == "would you wanting to know how to set one up"
    assert all(set(t.questions) <= set(bank) for t in dev + train)


def test_clariq_quoted_fields_and_grouping(tmp_path: Path) -> None:
    rows = ['7\t"say ""hi"" now"\tdesc\t3\tF1\tfirst\tQ00001\t\t',
            '7\t"say ""hi"" now"\tdesc\t3\tF1\tfirst\tQ2\tis it a\tyes',
            '7\t"say ""hi"" now"\tdesc\t3\tF2\tsecond\tQ2\tis it a\tno']
    (tmp_path / "dev.tsv").write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    [topic] = load_clariq(tmp_path, "dev")
    assert topic.request == 'say "hi" now'
    assert topic.facets == (ClariqFacet("F1", "first", {"Q00001": "", "Q2": "yes"}),
                            ClariqFacet("F2", "second", {"Q2": "no"}))
    assert topic.questions == {"Q2": "is it a"}


@pytest.mark.parametrize(("row", "message"), [
    ("7\treq\tdesc\t5\tF1\tf\tQ2\tq\ta", "dev.tsv:2: clarification_need '5' is not one of 1, 2, 3, 4"),
    ("7\treq\tdesc\t3\tF1\tf\tQ2", "dev.tsv:2: expected 9 tab-separated fields, found 7"),
])
def test_clariq_bad_rows(tmp_path: Path, row: str, message: str) -> None:
    (tmp_path / "dev.tsv").write_text(HEADER + row + "\n", encoding="utf-8")
    with pytest.raises(FormatError) as e:
        load_clariq(tmp_path, "dev")
    assert str(e.value).endswith(message)
    assert e.value.line == 2


def test_clariq_inconsistent_topic_and_split(tmp_path: Path) -> None:
    rows = ["7\treq\tdesc\t3\tF1\tf\tQ2\tq\ta", "7\treq\tdesc\t2\tF1\tf\tQ3\tq3\ta"]
    (tmp_path / "train.tsv").write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"train.tsv:3: topic 7 has a different request"):
        load_clariq(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown ClariQ split 'test'"):
        load_clariq(tmp_path, "test")
    with pytest.raises(FormatError, match="question_bank.tsv: file not found"):
        load_question_bank(tmp_path)


@pytest.mark.data
def test_interactcomp_decrypts_in_memory(shared_data: Path) -> None:
    tasks = load_interactcomp(shared_data / "interactcomp")
    assert len(tasks) == 70
    assert Counter(t.domain for t in tasks) == {
        "Humanities": 16, "Science & Engineering": 15, "Entertainment": 13,
        "Business & Economics": 9, "Sports": 6, "Law & Politics": 4,
        "Medicine & Life Sciences": 4, "Academic & Research": 2, "General Knowledge & Misc.": 1,
    }
    assert all(isinstance(t.id, str) and int(t.id) % 3 == 1 for t in tasks)
    assert (tasks[0].id, tasks[-1].id, tasks[0].domain) == ("1", "208", "Science & Engineering")
    assert [digest(tasks[0].question), digest(tasks[0].answer), digest(tasks[0].context)] == [
        "5087c4867c3c098d", "e5a9c4c331c06eeb", "6f5a6912a9a28107"]
    assert all(t.answer and t.context for t in tasks)


def encrypt(text: str, canary: str) -> str:
    key = hashlib.sha256(canary.encode()).digest()
    data = text.encode("utf-8")
    return base64.b64encode(bytes(b ^ key[i % len(key)] for i, b in enumerate(data))).decode()


def test_interactcomp_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "InteractComp210.dev.encrypted.jsonl"
    rec = {"id": 4, "canary": "c", **{k: encrypt(v, "c") for k, v in
                                        {"domain": "Sports", "question": "Which club?",
                                         "answer": "Ajax", "context": "Dutch, red and white"}.items()}}
    path.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    assert load_interactcomp(tmp_path) == [
        InteractTask("4", "Sports", "Which club?", "Ajax", "Dutch, red and white")]
    path.write_text(json.dumps(rec) + "\n" + json.dumps(rec) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r":2: duplicate task id 4$"):
        load_interactcomp(tmp_path)
    path.write_text(json.dumps({**rec, "answer": "!!not base64"}) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r':1: field "answer" does not decrypt'):
        load_interactcomp(tmp_path)
    path.write_text(json.dumps({"id": 4, "canary": "c"}) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r":1: missing field\(s\) domain, question, answer, "
                                          r"context$"):
        load_interactcomp(tmp_path)


@pytest.mark.data
def test_multihop_queries(shared_data: Path) -> None:
    queries = load_multihop_queries(shared_data / "multihop-rag")
    assert len(queries) == 852
    assert Counter(q.question_type for q in queries) == {
        "inference": 300, "comparison": 259, "temporal": 198, "null_query": 95}
    first = queries[0]
    assert (first.id, first.answer, first.question_type, len(first.evidence)) == (
        "0", "Sam Bankman-Fried", "inference", 3)
    assert first.evidence[0] == Evidence(
        url="https://www.theverge.com/2023/9/28/23893269/ftx-sam-bankman-fried-trial-evidence-crypto",
        title="The FTX trial is bigger than Sam Bankman-Fried",
        fact="Before his fall, Bankman-Fried made himself out to be the Good Boy of crypto — the "
             "trustworthy face of a sometimes-shady industry.",
        published_at="2023-09-28T12:00:00+00:00")
    assert all(int(q.id) % 3 == 0 for q in queries)
    nulls = [q for q in queries if q.question_type == "null_query"]
    assert all(q.evidence == () and q.answer == "Insufficient information." for q in nulls)


def test_multihop_bad_records(tmp_path: Path) -> None:
    path = tmp_path / "queries.dev.json"
    ok = {"query_index": 3, "query": "q", "answer": "a", "question_type": "temporal_query",
          "evidence_list": [{"url": "u", "title": "t", "fact": "f", "published_at": "p"}]}
    path.write_text(json.dumps([ok]), encoding="utf-8")
    [q] = load_multihop_queries(tmp_path)
    assert (q.id, q.question_type, q.evidence) == ("3", "temporal", (Evidence("u", "t", "f", "p"),))
    path.write_text(json.dumps([ok, {**ok, "query_index": 6, "question_type": "other"}]), encoding="utf-8")
    with pytest.raises(FormatError, match="record 1: unknown question_type 'other'"):
        load_multihop_queries(tmp_path)
    path.write_text(json.dumps([{**ok, "evidence_list": [{"url": 5}]}]), encoding="utf-8")
    with pytest.raises(FormatError, match='record 0, evidence 0: field "url" is int'):
        load_multihop_queries(tmp_path)
