"""Citation numbers: kept, dropped, renumbered globally, attributed, and checked."""

from __future__ import annotations

from pathlib import Path

from pursuit.agent.citations import (
    attribute,
    attribute_uncited,
    checked_answer,
    cited_numbers,
    keep_citations,
    renumber,
    split_sentences,
)
from pursuit.indexes.docstore import DocStore
from pursuit.indexes.records import Doc


def passage(n: int, doc_id: str, text: str = "x") -> dict[str, object]:
    return {"n": n, "doc_id": doc_id, "title": doc_id.upper(), "text": text, "published_at": None}


def test_cited_numbers_and_keep() -> None:
    assert cited_numbers("a [2]. b [1, 3] c [2]") == [2, 1, 3]
    assert keep_citations("Also [7]. Yes [1, 7] and [2][3].", {1, 2}) == "Also. Yes [1] and [2]."


def test_renumber_gives_each_document_one_global_number() -> None:
    answers = [
        {"question": "Who wrote Dune?", "answer": "Frank Herbert [2].",
         "passages": [passage(1, "a"), passage(2, "b")]},
        {"question": "Born where?", "answer": "Tacoma [1, 2].",
         "passages": [passage(1, "c"), passage(2, "b")]},
    ]
    notes, sources = renumber(answers)
    assert notes == ["Who wrote Dune?: Frank Herbert [1].", "Born where?: Tacoma [1, 2]."]
    assert [(s["n"], s["doc_id"]) for s in sources] == [(1, "b"), (2, "c")]


def test_checked_answer_renumbers_in_order_and_marks_unsourced(tmp_path: Path) -> None:
    store = DocStore.create(tmp_path / "docs.sqlite")
    store.add([Doc("b", "bee"), Doc("c", "sea")])
    sources = [passage(1, "b"), passage(2, "c"), passage(3, "gone")]
    out = checked_answer("Herbert wrote Dune [2]. Born in Tacoma [2][1]. He liked sand. "
                         "Deleted source [3]. The documents do not say when.", sources, store)
    assert out["text"] == "Herbert wrote Dune [1]. Born in Tacoma [1][2]. He liked sand. " \
                          "Deleted source. The documents do not say when."
    assert [c["doc_id"] for c in out["citations"]] == ["c", "b"]
    assert [s["citations"] for s in out["sentences"]] == [[1], [1, 2], [], [], []]
    assert [s["abstains"] for s in out["sentences"]] == [False] * 4 + [True]
    assert out["unsupported"] == 2  # saying the documents do not say is no unsupported claim
    store.close()


def test_attribute_credits_a_restating_passage_only() -> None:
    docs = [passage(1, "lru", "Decorator to wrap a function with a memoizing callable that "
                              "saves up to the maxsize most recent calls."),
            passage(2, "tides", "The moon raises the tides.")]
    assert attribute("lru_cache is a decorator that wraps a function and saves recent calls.",
                     docs) == 2 - 1
    assert attribute("It improves performance by avoiding redundant calculations.", docs) is None
    assert attribute("Tides.", docs) is None  # too few words to judge


def test_an_abstaining_sentence_gets_no_citation_however_close_to_a_passage() -> None:
    docs = [passage(1, "gemini", "Google said Gemini Ultra will launch early next year.")]
    text = "The documents do not say when Gemini Ultra will launch next year. It launches early next year."
    assert attribute_uncited(text, docs) == (
        "The documents do not say when Gemini Ultra will launch next year. "
        "It launches early next year [1].")


def test_split_sentences_keeps_trailing_citations() -> None:
    assert split_sentences("One. [1] Two [2].\nThree") == ["One [1].", "Two [2].", "Three"]


def test_split_sentences_does_not_end_a_sentence_at_an_abbreviation() -> None:
    assert split_sentences("It is David Benavidez vs. Demetrius Andrade [1]. Dr. Lee wrote "
                           "it. Mr.\nNext") == [
        "It is David Benavidez vs. Demetrius Andrade [1].", "Dr. Lee wrote it.", "Mr.", "Next"]
    assert split_sentences("No. It was sold (e.g. to U.S. buyers) in 2023.") == [
        "No.", "It was sold (e.g. to U.S. buyers) in 2023."]
