"""Listwise reranker: permutation parsing of messy model output, the sliding windows, exact
window bookkeeping with a scripted generator, the prompt, names and options."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from tiny_lm import tiny_lm

from pursuit.indexes.records import Doc, Query, Ranking
from pursuit.rerankers.listwise import (
    SYSTEM,
    ListwiseReranker,
    build_prompt,
    parse_permutation,
    windows,
)
from pursuit.retrievers.lm.causal import wrap_causal_lm


@pytest.mark.parametrize(("text", "n", "want"), [
    ("[2] > [1] > [3]", 3, [1, 0, 2]),
    ("2 > [1] > [2] > 9, 3", 3, [1, 0, 2]),          # bare numbers, repeat, out of range
    ("[3] > [1]", 4, [2, 0, 1, 3]),                  # missing ones follow in original order
    ("I think [0] then [12] are best", 3, [0, 1, 2]),  # nothing usable: order kept
    ("", 2, [0, 1]),
    ("[10] > [2] > [1]", 10, [9, 1, 0, 2, 3, 4, 5, 6, 7, 8]),  # two-digit identifiers
    ("Ranking: [4]>[4]>[2]\n[5] > [1] > [3] > [6]", 5, [3, 1, 4, 0, 2]),
    ("[-1] > [2]", 2, [0, 1]),                       # "-1" reads as 1
])
def test_parse_permutation(text: str, n: int, want: list[int]) -> None:
    assert parse_permutation(text, n) == want


def test_windows_slide_bottom_up_and_always_reach_the_top() -> None:
    assert windows(100, 20, 10) == [(e - 20, e) for e in range(100, 10, -10)]
    assert windows(30, 20, 10) == [(10, 30), (0, 20)]
    assert windows(25, 20, 10) == [(5, 25), (0, 15)]  # RankGPT's loop would skip the top 5
    assert windows(10, 20, 10) == [(0, 10)]
    assert windows(0, 20, 10) == []
    with pytest.raises(ValueError, match="need window >= 2 and 1 <= step <= window"):
        windows(10, 4, 5)


class Scripted:
    """A fake model: records every window it sees and answers with a scripted order."""

    def __init__(self, answer: str = "reverse") -> None:
        self.seen: list[list[str]] = []
        self.answer = answer

    def __call__(self, query: str, passages: Sequence[str]) -> str:
        self.seen.append([p.split()[0] for p in passages])
        if self.answer == "reverse":
            return " > ".join(f"[{i}]" for i in range(len(passages), 0, -1))
        # Name only the passage whose first word is the answer; the parser keeps the rest.
        words = self.seen[-1]
        return f"[{words.index(self.answer) + 1}]" if self.answer in words else "no idea"


def ranking(n: int) -> tuple[Query, Ranking]:
    q = Query("q", "tides")
    docs = {f"d{i}": Doc(f"d{i}", f"w{i} text of document {i}") for i in range(n)}
    return q, Ranking.from_scores(q, [(f"d{i}", float(n - i)) for i in range(n)],
                                  pipeline="first", index="x", docs=docs)


def test_sliding_window_bookkeeping_with_reversing_windows() -> None:
    fake = Scripted("reverse")
    q, cands = ranking(7)
    r = ListwiseReranker(generate=fake, window=4, step=2).transform(q, cands)
    # windows(7, 4, 2) = [(3, 7), (1, 5), (0, 3)], each reversed in turn:
    # 0123456 -> 0126543 -> 0562143 -> 6502143
    assert fake.seen == [["w3", "w4", "w5", "w6"], ["w1", "w2", "w6", "w5"], ["w0", "w5", "w6"]]
    assert r.doc_ids() == ["d6", "d5", "d0", "d2", "d1", "d4", "d3"]
    assert [h.score for h in r] == [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert (r.provenance.pipeline, r.provenance.index) == ("listwise", "x")


def test_window_stats_count_kept_orders_and_unreadable_answers() -> None:
    answers = iter(["[1] > [2] > [3] > [4]", "[2] > [1]", "no idea", "[9] > [1]"])
    q, cands = ranking(4)
    r = ListwiseReranker(generate=lambda query, passages: next(answers), window=4, step=2)
    r.transform(q, cands)                        # one window: copied back in order
    assert (r.stats.windows, r.stats.kept, r.stats.named_none) == (1, 1, 0)
    r.transform(q, cands)                        # reordered
    r.transform(q, cands)                        # unreadable: kept, names nothing
    r.transform(q, cands)                        # names only [1]: kept
    assert (r.stats.windows, r.stats.kept, r.stats.named_none) == (4, 3, 1)


def test_a_relevant_document_at_the_bottom_climbs_to_the_top() -> None:
    fake = Scripted("w9")  # the model always puts document 9 first when it sees it
    q, cands = ranking(10)
    r = ListwiseReranker(generate=fake, window=4, step=3).transform(q, cands)
    assert fake.seen[0] == ["w6", "w7", "w8", "w9"]
    assert len(fake.seen) == len(windows(10, 4, 3)) == 3
    assert r.doc_ids() == ["d9", "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8"]


def test_one_window_for_short_lists_and_none_for_a_single_document() -> None:
    fake = Scripted("reverse")
    q, cands = ranking(3)
    assert ListwiseReranker(generate=fake).transform(q, cands).doc_ids() == ["d2", "d1", "d0"]
    assert len(fake.seen) == 1
    q, one = ranking(1)
    assert ListwiseReranker(generate=fake).transform(q, one).doc_ids() == ["d0"]
    assert len(fake.seen) == 1  # no call for a window of one


def test_prompt_lists_numbered_passages_then_the_query() -> None:
    text = build_prompt("what causes tides?", ["The moon.", "Lava."])
    assert text == ("Here are 2 passages, each marked with a number in brackets.\n\n"
                    "[1] The moon.\n\n[2] Lava.\n\nSearch query: what causes tides?\n\n"
                    "Rank all 2 passages from most to least relevant to the search query. "
                    "Answer with the numbers only, in the form [2] > [1] > ..., and nothing "
                    "else.")


def test_passages_are_one_line_cut_to_max_doc_tokens_and_prompt_ids_are_the_chat_prompt(
) -> None:
    t = tiny_lm()
    lm = wrap_causal_lm(t.model, t.tokenizer, "tiny")
    r = ListwiseReranker(lm, max_doc_tokens=4)
    text = r.passage(Doc("d", "The moon pulls\n\nthe ocean   and makes the tide."))
    assert "\n" not in text
    assert len(t.tokenizer(text, add_special_tokens=False)["input_ids"]) == 4
    assert ListwiseReranker(lm, max_doc_tokens=300).passage(Doc("d", "The  moon\npulls.")) == \
        "The moon pulls."
    ids = r.prompt_ids("what makes the tide?", ["The moon.", "Lava."])
    assert t.tokenizer.decode(ids) == lm.chat_text(
        build_prompt("what makes the tide?", ["The moon.", "Lava."]), system=SYSTEM)
    with pytest.raises(ValueError, match="prompt_ids needs the reranker's lm"):
        ListwiseReranker(generate=Scripted()).prompt_ids("q", ["a", "b"])


def test_names_options_and_errors() -> None:
    fake = Scripted()
    assert ListwiseReranker(generate=fake).name == "listwise"
    assert ListwiseReranker(generate=fake, window=10, options={"window": 10}).name == \
        "listwise(window=10)"
    with pytest.raises(ValueError, match="listwise has no option 'layers'; options: model"):
        ListwiseReranker.from_options(None, layers="middle")
    with pytest.raises(ValueError, match="needs an lm or a generate function"):
        ListwiseReranker()
    with pytest.raises(ValueError, match="got window=4, step=5"):
        ListwiseReranker(generate=fake, window=4, step=5)
