"""A multi-turn chat with the in-process model, with and without the prefix KV cache.

Every turn resends the whole conversation: a system message holding one MultiHop-RAG
article (``--chars`` characters of its body) and the turns so far, then a new user
question about the article. The same conversation runs twice in this process, first
with ``prefix_cache=False`` (every prompt prefilled whole) and then with a fresh
:class:`~pursuit.agent.llm.prefix_cache.PrefixKVCache`; greedy decoding, so the two runs
should write the same replies. Reported per turn: prompt tokens, seconds without and
with the cache, and whether the replies are identical; overall: the speed-up (ratio of
total seconds, both measured in the same run) and the share of prompt tokens reused.

Run:
    HF_HUB_OFFLINE=1 nice .venv/bin/python bench/prefix_cache.py [--model qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from pursuit.agent.llm.contract import Message, system, user
from pursuit.agent.llm.local import InProcessLLM
from pursuit.agent.llm.prefix_cache import PrefixKVCache
from pursuit.retrievers.lm.causal import shared_causal_lm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
from runtime import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "multihop-rag" / "corpus.json"
QUESTIONS = ("Who is this article about? Answer in one sentence.",
             "When did it happen? Answer in one sentence.",
             "Which organisation is named first? Answer in one sentence.",
             "Is a number given? Quote it.",
             "What happens next, according to the article? One sentence.",
             "Summarise the article in ten words.")


def chat(llm: InProcessLLM, article: dict[str, Any], chars: int, turns: int,
         max_tokens: int) -> list[dict[str, Any]]:
    """Run the conversation; per turn its prompt tokens, seconds and reply."""
    talk: list[Message] = [system("You answer questions about this news article.\n"
                                  f"Title: {article['title']}\n{article['body'][:chars]}")]
    out = []
    for question in QUESTIONS[:turns]:
        talk.append(user(question))
        started = time.perf_counter()
        reply = llm.complete(talk, max_tokens=max_tokens)
        out.append({"prompt_tokens": reply.prompt_tokens, "seconds": time.perf_counter() - started,
                    "reply": reply.text})
        talk.append({"role": "assistant", "content": reply.text})
    return out


def main() -> None:
    """Run both conditions, print and save the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--article", type=int, default=0, help="index into corpus.json")
    ap.add_argument("--chars", type=int, default=4000)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prefix_cache.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    article = json.loads(CORPUS.read_text(encoding="utf-8"))[args.article]
    lm = shared_causal_lm(args.model)
    InProcessLLM(lm, prefix_cache=False).complete([user("Say hi.")], max_tokens=2)  # warm-up
    plain = chat(InProcessLLM(lm, prefix_cache=False), article, args.chars, args.turns,
                 args.max_tokens)
    cache = PrefixKVCache()
    cached = chat(InProcessLLM(lm, prefix_cache=cache), article, args.chars, args.turns,
                  args.max_tokens)
    rows = [{"turn": i, "prompt_tokens": p["prompt_tokens"], "plain_s": round(p["seconds"], 3),
             "cached_s": round(c["seconds"], 3), "same_reply": p["reply"] == c["reply"]}
            for i, (p, c) in enumerate(zip(plain, cached, strict=True), start=1)]
    total_plain = sum(r["plain_s"] for r in rows)
    total_cached = sum(r["cached_s"] for r in rows)
    result = {"model": lm.model_id, "article": article["url"], "chars": args.chars,
              "max_tokens": args.max_tokens, "threads": args.threads,
              "runtime": runtime(lm.dtype), "turns": rows,
              "plain_s": round(total_plain, 3), "cached_s": round(total_cached, 3),
              "speedup": round(total_plain / total_cached, 3),
              "reused_share": round(cache.stats.reused_tokens / cache.stats.prompt_tokens, 4),
              "same_replies": sum(r["same_reply"] for r in rows)}
    table = Table(title=f"{lm.model_id}: {args.turns}-turn chat about one article")
    for col in ("turn", "prompt tokens", "plain s", "cached s", "same reply"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["turn"]), str(r["prompt_tokens"]), f"{r['plain_s']:.2f}",
                      f"{r['cached_s']:.2f}", "yes" if r["same_reply"] else "NO")
    console = Console()
    console.print(table)
    console.print(f"total {total_plain:.1f} s plain, {total_cached:.1f} s cached: "
                  f"{result['speedup']:.2f}x; {result['reused_share']:.0%} of prompt tokens "
                  f"reused; {result['same_replies']}/{len(rows)} replies identical")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
