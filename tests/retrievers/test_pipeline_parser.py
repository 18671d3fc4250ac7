"""parse_pipeline: the textual form of a pipeline, read without eval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.records import Query, Ranking
from pursuit.retrievers.pipeline_parser import PipelineError, parse_pipeline, stage_names
from pursuit.retrievers.registry import needs_vectors
from pursuit.retrievers.stage import RRF, Cutoff, Retriever, ScoreFusion, Stage, Then, Weighted

TABLES = {
    "a": {"d1": 10.0, "d2": 6.0, "d3": 2.0},
    "b": {"d2": 0.9, "d3": 0.5, "d4": 0.1},
    "c": {"d1": 1.0, "d2": 2.0, "d3": 3.0, "d4": 4.0},
}


class TableRetriever(Retriever):
    """Same scores for every query; ``options`` records the constructor's keywords."""

    def __init__(self, label: str, **options: Any) -> None:
        self.label, self.options = label, options

    def retrieve(self, query: Query, k: int) -> Ranking:
        return Ranking.from_scores(query, TABLES[self.label].items(), pipeline=self.name).top(k)

    def score(self, query: Query, doc_ids: Sequence[str]) -> np.ndarray:
        return np.array([TABLES[self.label].get(d, 0.0) for d in doc_ids])


def _registry(made: list[str] | None = None) -> dict[str, Any]:
    def factory(label: str) -> Any:
        def make(**options: Any) -> Stage:
            if made is not None:
                made.append(label)
            if set(options) - {"model", "k1", "fast"}:
                raise TypeError(f"unexpected option(s) {sorted(set(options) - {'model'})}")
            return TableRetriever(label, **options)
        return make
    return {"a": factory("a"), "b": factory("b"), "c": factory("c"), "bm25": factory("a")}


REG = _registry()


@pytest.mark.parametrize(
    "text",
    [
        "a", "a%100", "a%100 | b%100", "0.3*a + 0.7*b", "a%100 >> c%10",
        "zscore(0.5*a + 0.5*b)", "none(a + b)", "(a | b) >> c", "a | b >> c",
        "a >> (b >> c)", "a >> b >> c", "0.5*(a + b) + c", "(a + b)%5", "2*(a | b)",
        "(zscore(a + b)) + c", "a%10 >> c%3 | b", "0.3*a%2 + 0.7*b%2", "-1*a",
        "0.5*(a | b)%10", "a%100 >> (zscore(b + c))%10",
    ],
)
def test_round_trip_of_names(text: str) -> None:
    stage = parse_pipeline(text, REG)
    assert stage.name == text
    assert parse_pipeline(stage.name, REG).name == stage.name


def test_structure_follows_python_precedence() -> None:
    stage = parse_pipeline("a % 100 >> c % 10 | b", REG)
    assert isinstance(stage, RRF)
    then = stage.members[0][1]
    assert isinstance(then, Then)
    assert (then.left.name, then.right.name) == ("a%100", "c%10")
    fused = parse_pipeline("0.3 * a + b * 0.7", REG)
    assert isinstance(fused, ScoreFusion)
    assert [(w, s.name) for w, s in fused.members] == [(0.3, "a"), (0.7, "b")]
    assert isinstance(parse_pipeline("(a | b) % 3", REG), Cutoff)
    assert isinstance(parse_pipeline("2 * a", REG), Weighted)


def test_parsed_pipeline_ranks_exactly_like_the_python_one() -> None:
    a, b, c = (TableRetriever(x) for x in "abc")
    for text, built in [("a%2 >> c", a % 2 >> c), ("a | b", a | b),
                        ("0.3*a + 0.7*b", 0.3 * a + 0.7 * b),
                        ("zscore(a + b)", (a + b).normalised("zscore"))]:
        ours = parse_pipeline(text, REG).search("q")
        theirs = built.search("q")
        assert (ours.hits, ours.provenance.pipeline) == (theirs.hits, theirs.provenance.pipeline)


def test_weight_before_a_cutoff_stays_a_fusion_weight() -> None:
    # Python alone would read (0.3*a)%2 and min-max away the 0.3; the parser keeps it.
    stage = parse_pipeline("0.3*a%2 + 0.7*b%2", REG)
    assert isinstance(stage, ScoreFusion)
    assert [(w, s.name) for w, s in stage.members] == [(0.3, "a%2"), (0.7, "b%2")]
    # a%2: d1 1, d2 0; b%2: d2 1, d3 0 (d1 at b's floor 0, d3 at a's floor 0)
    assert stage.search("q").scores() == pytest.approx({"d1": 0.3, "d2": 0.7, "d3": 0.0})


def test_keyword_options_reach_the_constructor_and_are_shared() -> None:
    made: list[str] = []
    reg = _registry(made)
    stage = parse_pipeline("a(model='all-MiniLM-L6-v2', k1=1.2, fast=True)%50 | a | a", reg)
    first = stage.members[0][1]
    assert isinstance(first, TableRetriever)
    assert first.options == {"model": "all-MiniLM-L6-v2", "k1": 1.2, "fast": True}
    assert first.k == 50
    assert made == ["a", "a"]  # plain 'a' built once and reused
    assert stage.members[1][1] is stage.members[2][1]


def _error(text: str, reg: dict[str, Any] = REG) -> str:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text, reg)
    assert isinstance(info.value, PursuitError)
    return str(info.value)


def test_unknown_name_lists_the_available_ones() -> None:
    assert _error("a%10 >> bm52") == (
        "pipeline column 9: unknown stage 'bm52'; did you mean 'bm25'? available stages: "
        "a, b, bm25, c; minmax, zscore, none(...) wrap a '+' fusion\n"
        "  a%10 >> bm52\n"
        "          ^")


def test_syntax_error_points_at_the_column() -> None:
    message = _error("a %% 10")
    assert message.startswith("pipeline column 4: syntax error: ")
    assert message.endswith("\n  a %% 10\n     ^")


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("a % 0", 5, "'%' needs a positive integer cutoff, found 0, e.g. bm25%100"),
        ("a % 2.5", 5, "'%' needs a positive integer cutoff, found 2.5"),
        ("a % True", 5, "'%' needs a positive integer cutoff, found True"),
        ("a % b", 5, "'%' needs a positive integer cutoff, found b"),
        ("a * b", 1, "'*' takes a number and a stage, e.g. 0.3*bm25"),
        ("a - b", 1, "operator '-' is not part of the pipeline language; use >>, |, +, * and %"),
        ("a + 0.5", 5, "expected a stage, found the number 0.5"),
        ("zscore(a)", 8, "zscore(...) wraps a '+' fusion, found 'a'"),
        ("zscore(a, b)", 1, "zscore(...) takes one '+' fusion"),
        ("zscore", 1, "zscore wraps a '+' fusion"),
        ("a('x')", 3, "give a's options by keyword, e.g. a(k=100)"),
        ("a(model=b)", 9, "option model= needs a constant"),
        ("a(**opts)", 5, "'**' options are not allowed"),
        ("a(depth=3)", 1, "a rejected its options: unexpected option(s) ['depth']"),
        ("a.b", 1, "'a.b' is not part of the pipeline language"),
        ("__import__('os')", 1, "unknown stage '__import__'"),
        ("[a, b]", 1, "'[a, b]' is not part of the pipeline language"),
    ],
)
def test_errors_name_the_problem_and_column(text: str, column: int, fragment: str) -> None:
    message = _error(text)
    assert message.startswith(f"pipeline column {column}: ")
    assert fragment in message


def test_empty_text_and_non_stage_factory() -> None:
    assert _error("  ").startswith("pipeline '  ': empty pipeline; available stages: a, b")
    assert "registry entry 'x' returned int, not a Stage" in _error("x", {"x": lambda: 3})


def test_columns_count_characters_not_bytes() -> None:
    message = _error("a | ééé")
    assert message.startswith("pipeline column 5: unknown stage 'ééé'")


@pytest.mark.parametrize("text, names, vectors", [
    ("bm25", {"bm25"}, False),
    ("bm25%100 >> icr(model='dense', k=3)%10", {"bm25", "icr"}, False),  # an option, not a stage
    ("0.5*bm25 + 0.5*dense", {"bm25", "dense"}, True),
    ("zscore(0.3*bm25%100 + -0.7*dense(k=50))", {"bm25", "dense"}, True),
    ("bm25%100 | events(pool=200)\n >> ql%5", {"bm25", "events", "ql"}, True),
])
def test_stage_names_come_from_the_syntax_tree(text: str, names: set[str], vectors: bool) -> None:
    assert stage_names(text) == names
    assert needs_vectors(text) is vectors
    assert needs_vectors("bm25", text) is vectors  # any of several pipelines


def test_stage_names_of_unreadable_text_is_the_parse_error() -> None:
    with pytest.raises(PipelineError, match="syntax error: invalid syntax"):
        stage_names("bm25 >>")
    with pytest.raises(PipelineError, match="empty pipeline"):
        needs_vectors(" ")
