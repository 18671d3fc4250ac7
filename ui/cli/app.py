"""The ``pursuit`` command line: index, add, delete, add-vectors, search, ask, eval, compare,
serve, demo, events build, and ``train`` (:mod:`pursuit.ui.cli.train`); output helpers live in
:mod:`pursuit.ui.cli.output`.

Every command prints readable output by default and one JSON document with ``--json``;
failures print what is wrong and what to do, and exit with status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pursuit.indexes.errors import PursuitError
from pursuit.indexes.filters import DocFilter
from pursuit.indexes.records import Query
from pursuit.ui.cli.output import (
    JsonOpt,
    close_and_report,
    console,
    emit,
    print_ranking,
    ranking_json,
)
from pursuit.ui.cli.train import train_app
from pursuit.ui.settings import Settings, load_settings

app = typer.Typer(name="pursuit", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Index a corpus, search it, and evaluate retrieval pipelines.")
DEFAULT_PIPELINE = "0.5*bm25 + 0.5*dense"

PipelineOpt = Annotated[str, typer.Option("--pipeline", "-p", help=(
    "Pipeline in textual form, e.g. 'bm25', 'bm25%100 | dense%100', '0.3*bm25 + 0.7*dense'."))]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help=(
    "Fail at once when another process is changing the index, instead of waiting for it."))]
DtypeOpt = Annotated[str | None, typer.Option(help=(
    "What in-process models compute in: auto (bfloat16 on CUDA GPUs and CPUs with "
    "AVX512-BF16 or AMX, float32 elsewhere), bfloat16, float32 or float16 (also "
    "PURSUIT_DTYPE). A reranker's own option, e.g. icr(dtype=float32), wins."))]
KeepIdsOpt = Annotated[bool, typer.Option("--keep-identical-ids", help=(
    "Keep a retrieved document whose id equals the query id. By default it is dropped (and "
    "each retriever searches one deeper), as BEIR and Anserini evaluate: on sets whose "
    "queries are corpus documents (ArguAna, Quora, SciDocs) a query would otherwise find "
    "itself at rank 1, and published figures assume it is dropped."))]


def _settings(**flags: Any) -> Settings:
    return load_settings(flags)


@app.command()
def index(
    source: Annotated[str, typer.Argument(help="BEIR folder, .json/.jsonl file, folder of "
                                               ".txt/.md/.html files, or 'pydocs'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to create or replace.")],
    encoder: Annotated[str | None, typer.Option(help="Dense encoder: hub id or local path.")] = None,
    vectors: Annotated[bool, typer.Option("--vectors/--no-vectors", "--dense/--no-dense", help="Build dense vectors; --no-vectors builds the store and BM25 only (seconds), 'pursuit add-vectors' adds them later.")] = True,
    factory: Annotated[str | None, typer.Option(help="FAISS factory string: Flat, HNSW32, IVF256,Flat.")] = None,
    field: Annotated[list[str] | None, typer.Option(help="Field mapping for JSON records, e.g. --field text=body.")] = None,
    dtype: DtypeOpt = None,
    no_wait: NoWaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build an index (documents, BM25, dense vectors) from SOURCE into --out.

    The build goes to a temporary folder renamed into place at the end, so an interrupted
    build leaves the previous index untouched. With --no-vectors no encoder runs; pipelines
    of bm25 and rerankers work on such an index, and 'pursuit add-vectors' adds the vectors
    that dense, hybrid and events stages need.
    """
    from pursuit.ui.cli.indexing import build_index

    settings = _settings(encoder=encoder, factory=factory, dtype=dtype)
    index = build_index(source, out, settings=settings, vectors=vectors,
                        fields=_pairs(field, "--field"), console=console, wait=not no_wait)
    close_and_report(index, as_json, lambda n: f"[green]Indexed[/] {n:,} documents into {out}")


@app.command()
def add(
    index_dir: Annotated[Path, typer.Argument(help="An existing index directory.")],
    source: Annotated[str, typer.Argument(help="Documents to add (same kinds as 'index').")],
    field: Annotated[list[str] | None, typer.Option(help="Field mapping for JSON records.")] = None,
    no_wait: NoWaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Add the documents of SOURCE to an existing index."""
    from pursuit.ui.cli.indexing import add_documents

    index = add_documents(index_dir, source, fields=_pairs(field, "--field"), console=console,
                          wait=not no_wait)
    close_and_report(index, as_json, lambda n: f"[green]Index now holds[/] {n:,} documents")


@app.command()
def delete(
    index_dir: Annotated[Path, typer.Argument(help="An existing index directory.")],
    ids: Annotated[list[str], typer.Argument(help="Ids of the documents to delete.")],
    no_wait: NoWaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete documents by id from an existing index (an id named twice counts once)."""
    from pursuit.indexes.collection import SearchIndex
    from pursuit.ui.cli.indexing import say_waiting

    unique = list(dict.fromkeys(ids))
    index = SearchIndex.open(index_dir).delete(unique, wait=not no_wait, on_wait=say_waiting(console))
    close_and_report(index, as_json,
                     lambda n: f"[green]Deleted[/] {len(unique)}; {n:,} documents left")


@app.command(name="add-vectors")
def add_vectors(
    index_dir: Annotated[Path, typer.Argument(help="An existing index directory.")],
    encoder: Annotated[str | None, typer.Option(help="Dense encoder: hub id, local path or LLM-QL checkpoint (default: the configured one).")] = None,
    factory: Annotated[str | None, typer.Option(help="FAISS factory string: Flat, HNSW32, IVF256,Flat.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Re-encode an index whose vectors came from another encoder.")] = False,
    no_wait: NoWaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Add dense vectors to an index built without them ('pursuit index --no-vectors').

    Every document is encoded once, so that dense, hybrid and events stages can run; the
    index is updated copy-on-write, so an interrupted run leaves it as it was. An index that
    already has vectors from the encoder is left as it is.
    """
    from pursuit.ui.cli.indexing import add_vectors as add_index_vectors

    index = add_index_vectors(index_dir, settings=_settings(encoder=encoder, factory=factory),
                              replace=replace, console=console, wait=not no_wait)
    model = (index.encoder_config or {}).get("model_id", "?")
    close_and_report(index, as_json,
                     lambda n: f"[green]Index holds dense vectors[/] of {n:,} documents ({model})")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The query text.")],
    index_dir: Annotated[Path, typer.Option("--index", "-i", help="Index directory.")],
    pipeline: PipelineOpt = DEFAULT_PIPELINE,
    k: Annotated[int, typer.Option("-k", min=1, help="Number of results to show (at least 1).")] = 10,
    published_before: Annotated[str | None, typer.Option(help="Only documents published before this ISO date.")] = None,
    published_after: Annotated[str | None, typer.Option(help="Only documents published on or after this ISO date.")] = None,
    where: Annotated[list[str] | None, typer.Option(help="Metadata filter, e.g. --where source=BBC.")] = None,
    dtype: DtypeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search an index with a pipeline and show the top results."""
    from pursuit.rerankers.pipelines import open_pipeline

    flt = DocFilter(published_before=published_before, published_after=published_after,
                    metadata=_pairs(where, "--where"))  # type: ignore[arg-type]
    with open_pipeline(index_dir, pipeline, filter=flt, fetch_docs=True,
                       dtype=_settings(dtype=dtype).dtype) as stage:
        ranking = stage.search(Query("q", query)).top(k)
    if as_json:
        emit(ranking_json(ranking))
    else:
        print_ranking(ranking)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    index_dir: Annotated[Path, typer.Option("--index", "-i", help="Index directory.")],
    clarify: Annotated[bool, typer.Option("--clarify/--no-clarify", help="Ask back when the question is ambiguous (--no-clarify for unattended runs).")] = True,
    as_of: Annotated[str | None, typer.Option(help="Answer as of this ISO date: no document published on or after it is used.")] = None,
    llm: Annotated[str | None, typer.Option(help="In-process chat model: packaged name, hub id or path.")] = None,
    llm_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.")] = None,
    rerank: Annotated[str, typer.Option(help="Reranker of each sub-question's candidates ('none' to skip).")] = "icr",
    retrieval: Annotated[str | None, typer.Option(help="First-stage pipeline (default: hybrid bm25 + dense).")] = None,
    max_nodes: Annotated[int, typer.Option(help="Most sub-questions in the plan.")] = 6,
    max_rounds: Annotated[int, typer.Option(help="Planning rounds.")] = 2,
    thread: Annotated[str | None, typer.Option(help="Thread id (default: a new one).")] = None,
    dtype: DtypeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question with cited sources: plan, search in parallel, ask back, synthesise."""
    from pursuit.agent.config import AgentConfig
    from pursuit.ui.cli.ask import print_answer, run_ask

    settings = _settings(llm=llm, llm_url=llm_url, dtype=dtype)
    config = AgentConfig(clarify=clarify, as_of=as_of, retrieval=retrieval,
                         rerank=None if rerank.lower() == "none" else rerank,
                         max_nodes=max_nodes, max_rounds=max_rounds, dtype=settings.dtype)
    doc = run_ask(question, index_dir=index_dir, settings=settings, config=config,
                  thread_id=thread, console=console)
    if as_json:
        emit(doc)
    else:
        print_answer(doc, Console())


@app.command(name="eval")
def evaluate(
    dataset: Annotated[Path, typer.Argument(help="BEIR dataset folder.")],
    pipeline: PipelineOpt = DEFAULT_PIPELINE,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write run.trec, metrics.json, provenance.json here.")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N queries.")] = None,
    split: Annotated[str, typer.Option(help="Qrels split.")] = "test",
    index_dir: Annotated[Path | None, typer.Option("--index", help="Index of the dataset's corpus (default: built once and cached).")] = None,
    dtype: DtypeOpt = None,
    keep_identical_ids: KeepIdsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline over a dataset's queries and report nDCG@10, R@100, MRR@10 and MAP."""
    from pursuit.ui.cli.evaluation import evaluate_pipeline

    result = evaluate_pipeline(dataset, pipeline, settings=_settings(dtype=dtype), out=out, limit=limit,
                               split=split, index_dir=index_dir, console=console,
                               keep_identical_ids=True if keep_identical_ids else None)
    if result["queries_in_corpus"] and not result["keep_identical_ids"]:
        console.print(f"{result['queries_in_corpus']:,} of {result['queries']:,} queries are "
                      "corpus documents too; each query's own document was not counted in its "
                      "ranking (BEIR's convention; --keep-identical-ids keeps it)")
    if as_json:
        emit({"pipeline": pipeline, "dataset": str(dataset), "split": split,
               "queries": result["queries"], "metrics": result["metrics"],
               "keep_identical_ids": result["keep_identical_ids"],
               "out": str(out) if out else None})
        return
    table = Table(title=f"{pipeline} on {dataset.name} ({split}, {result['queries']} queries)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    Console().print(table)
    if out:
        console.print(f"wrote {out}/run.trec, metrics.json, provenance.json")


@app.command()
def compare(
    dataset: Annotated[Path, typer.Argument(help="BEIR dataset folder.")],
    pipeline: Annotated[list[str] | None, typer.Option("--pipeline", "-p", help="NAME=PIPELINE, repeatable.")] = None,
    run: Annotated[list[str] | None, typer.Option("--run", "-r", help="NAME=FILE: a saved TREC run, repeatable.")] = None,
    baseline: Annotated[str | None, typer.Option(help="NAME of the baseline (default: the first pipeline, else the first run).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N queries.")] = None,
    split: Annotated[str, typer.Option(help="Qrels split.")] = "test",
    index_dir: Annotated[Path | None, typer.Option("--index", help="Index of the dataset's corpus.")] = None,
    dtype: DtypeOpt = None,
    keep_identical_ids: KeepIdsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Compare pipelines and saved TREC runs on a dataset with paired t-tests (Holm-corrected)
    against a baseline."""
    from pursuit.ui.cli.evaluation import compare_pipelines

    systems = _pairs(pipeline, "--pipeline")
    runs = {name: Path(file) for name, file in _pairs(run, "--run").items()}
    first = next(iter(systems), next(iter(runs), None))
    comparison = compare_pipelines(dataset, systems, runs=runs, baseline=baseline or first or "",
                                   settings=_settings(dtype=dtype), limit=limit, split=split,
                                   index_dir=index_dir, console=console,
                                   keep_identical_ids=True if keep_identical_ids else None)
    if as_json:
        emit(comparison.to_dict())
    else:
        Console().print(comparison.to_table())


HostOpt = Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1: "
                                                  "this machine only).")]
PortOpt = Annotated[int | None, typer.Option(help="Port to listen on (default 8000).")]


@app.command()
def serve(
    index_dir: Annotated[Path | None, typer.Option("--index", "-i", help="Index to answer from (default: the demo index).")] = None,
    host: HostOpt = None,
    port: PortOpt = None,
    token: Annotated[str | None, typer.Option(help="Require 'Authorization: Bearer TOKEN' on every API request (also PURSUIT_TOKEN).")] = None,
    max_runs: Annotated[int | None, typer.Option(help="Questions worked on at once; more get 429.")] = None,
    llm: Annotated[str | None, typer.Option(help="In-process chat model: packaged name, hub id or path.")] = None,
    llm_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.")] = None,
    cors_origins: Annotated[str | None, typer.Option(help="Comma-separated origins allowed to call the API (default: none).")] = None,
    dtype: DtypeOpt = None,
) -> None:
    """Serve the web chat: the page and its API at http://HOST:PORT/ (models load first)."""
    from pursuit.ui.cli.serving import run_server

    settings = _settings(index=str(index_dir) if index_dir else None, host=host, port=port,
                         token=token, max_runs=max_runs, llm=llm, llm_url=llm_url,
                         cors_origins=cors_origins, dtype=dtype)
    run_server(settings, console=console)


@app.command()
def demo(
    index_dir: Annotated[Path | None, typer.Option("--index", help="Demo index directory.")] = None,
    host: HostOpt = None,
    port: PortOpt = None,
    compare: Annotated[bool, typer.Option("--compare", help="Instead of the chat: sample searches and a comparison of pipelines on written questions.")] = False,
    dtype: DtypeOpt = None,
) -> None:
    """Build the demo index of Python's own documentation if missing, then serve the chat on it."""
    settings = _settings(demo_index=index_dir, host=host, port=port, dtype=dtype)
    if compare:
        from pursuit.ui.cli.demo import run_demo

        run_demo(settings, console=console, out=Console())
        return
    from pursuit.ui.cli.serving import run_server

    run_server(settings, console=console, demo=True)


events_app = typer.Typer(no_args_is_help=True, help="Event stores: news events beside an index.")
app.add_typer(events_app, name="events")


@events_app.command("build")
def events_build(
    index_dir: Annotated[Path, typer.Option("--index", "-i", help="Index directory (with dense vectors).")],
    window_days: Annotated[float, typer.Option(help="Longest time span of one event, in days.")] = 3.0,
    threshold: Annotated[float, typer.Option(help="Lowest document-centroid cosine to join an event.")] = 0.6,
    update: Annotated[bool, typer.Option("--update/--rebuild", help="Add only new documents to an existing store.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Group the index's dated documents into events (INDEX/events), for the 'events' stage."""
    from pursuit.indexes.collection import SearchIndex
    from pursuit.indexes.events.build import build_event_store

    with SearchIndex.open(index_dir) as index:
        store = build_event_store(index, window_days=window_days, threshold=threshold,
                                  update=update)
    summary = {"index": str(index_dir), "events": len(store), "documents": len(store.event_of),
               "largest": max((len(e.members) for e in store.events()), default=0)}
    emit(summary) if as_json else console.print(
        f"[green]Built[/] {summary['events']:,} events over {summary['documents']:,} dated "
        f"documents in {index_dir / 'events'}")


app.add_typer(train_app, name="train")


# Helpers ---------------------------------------------------------------------------
def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise PursuitError(f"{flag} expects KEY=VALUE, got {value!r}")
        if key.strip() in pairs:
            raise PursuitError(f"{flag} names {key.strip()!r} twice")
        pairs[key.strip()] = rest.strip()
    return pairs


def main() -> None:
    """Entry point of the ``pursuit`` command."""
    try:
        app()
    except PursuitError as exc:
        console.print(Text("error: ", style="bold red") + Text(str(exc)), highlight=False,
                      soft_wrap=True)  # never break a command the message names
        sys.exit(1)
