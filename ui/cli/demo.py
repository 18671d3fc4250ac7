"""``pursuit demo``: index Python's own documentation, search it, and evaluate pipelines.

The evaluation uses a small set of questions written for this demo, each judged against
the documentation entry that answers it (every passage of a split entry counts). The
questions paraphrase what the entry does rather than quoting it, so lexical and dense
retrieval are both tested.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.datasets.beir import Dataset
from pursuit.indexes.records import Query
from pursuit.rerankers.pipelines import pipelines
from pursuit.retrievers.evaluation.compare import compare
from pursuit.retrievers.registry import encoder_for
from pursuit.ui.cli.serving import ensure_demo_index
from pursuit.ui.settings import Settings

#: (question, id of the documentation entry that answers it)
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("turn a JSON string into a Python dict", "module:json.loads"),
    ("combine directory names into a file path", "module:os.path.join"),
    ("replace every match of a regular expression", "module:re.sub"),
    ("copy a whole folder tree recursively", "module:shutil.copytree"),
    ("group consecutive items that share a key", "module:itertools.groupby"),
    ("randomly reorder the items of a list", "module:random.shuffle"),
    ("run an external command and wait for it to finish", "module:subprocess.run"),
    ("count how many times each element occurs", "module:collections.Counter"),
    ("cache the results of a function call", "module:functools.lru_cache"),
    ("pause the program for a few seconds", "module:time.sleep"),
    ("greatest common divisor of two integers", "module:math.gcd"),
    ("encode bytes as base64 text", "module:base64.b64encode"),
    ("open a connection to an SQLite database", "module:sqlite3.connect"),
    ("split a URL into scheme, host and path", "module:urllib.parse.urlparse"),
    ("find files whose names match a wildcard pattern", "module:glob.glob"),
    ("middle value of a list of numbers", "module:statistics.median"),
    ("generate a random unique identifier", "module:uuid.uuid4"),
    ("temporary folder that is deleted afterwards", "module:tempfile.TemporaryDirectory"),
    ("remove common leading whitespace from lines", "module:textwrap.dedent"),
    ("insert into a sorted list keeping it sorted", "module:bisect.insort"),
    ("anonymous inline function expression", "topic:lambda"),
    ("handle exceptions raised in a block of code", "topic:try"),
    ("a span of time such as three days", "module:datetime.timedelta"),
    ("push an item onto a priority queue heap", "module:heapq.heappush"),
)
SAMPLE_SEARCHES = ("read a file line by line", "sort a list of dictionaries by a key",
                   "what does the yield keyword do")
PIPELINES = {"bm25": "bm25", "dense": "dense", "hybrid": "0.5*bm25 + 0.5*dense",
             "rrf": "bm25%100 | dense%100"}


def demo_dataset(index: SearchIndex) -> Dataset:
    """The demo questions as a dataset judged against the documents of ``index``.

    An entry split into passages (``module:csv#1``, ``module:csv#2``) is relevant as a
    whole: every one of its passages in the index is judged relevant.
    """
    ids = [doc.id for _, doc in index.store.iter_docs()]
    qrels: dict[str, dict[str, int]] = {}
    queries = []
    for n, (question, target) in enumerate(QUESTIONS, start=1):
        qid = f"demo-{n}"
        relevant = {i: 1 for i in ids if i == target or i.startswith(target + "#")}
        if relevant:
            queries.append(Query(qid, question))
            qrels[qid] = relevant
    return Dataset("python-docs-demo", [], queries, qrels)


def run_demo(settings: Settings, *, console: Console, out: Console) -> None:
    """Build the demo index if missing, run sample searches, and compare pipelines."""
    path = ensure_demo_index(settings, console)
    with SearchIndex.open(path) as index:
        out.print(Text(f"Demo index: {index.manifest.n_docs:,} documents from "
                       f"{index.manifest.source} ({path})", style="bold"))
        encoder = encoder_for(index, dtype=settings.dtype)
        hybrid = pipelines(index, {"hybrid": PIPELINES["hybrid"]}, fetch_docs=True,
                                encoder=encoder, dtype=settings.dtype)["hybrid"]
        for question in SAMPLE_SEARCHES:
            ranking = hybrid.search(question).top(3)
            out.print(Text(f"\n> {question}", style="bold"))
            for i, hit in enumerate(ranking, start=1):
                title = hit.doc.title if hit.doc else ""
                out.print(Text(f"  {i}. {hit.doc_id}  ", style="cyan") + Text(title),
                          highlight=False)
        dataset = demo_dataset(index)
        out.print(Text(f"\nEvaluating {len(PIPELINES)} pipelines on {len(dataset.queries)} "
                       "written questions (paired t-tests against bm25, Holm-corrected):",
                       style="bold"))
        stages = pipelines(index, PIPELINES, encoder=encoder, dtype=settings.dtype)
        out.print(compare(stages, dataset, "bm25").to_table())
