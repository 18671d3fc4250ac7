"""Rerankers by name in the textual pipeline form, over a real index directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_lm import tiny_lm

from pursuit.indexes.collection import SearchIndex
from pursuit.indexes.records import Doc
from pursuit.rerankers.base import NeedsFirstStageError
from pursuit.rerankers.pipelines import pipeline
from pursuit.retrievers.pipeline_parser import PipelineError

DOCS = [
    Doc("moon", "The moon pulls the ocean and makes the tide.", title="Tides"),
    Doc("lava", "Lava flows from a volcano during an eruption."),
    Doc("snake", "A python is a large snake."),
    Doc("ocean", "The ocean makes the tide; the moon pulls it."),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-model")
    lm = tiny_lm()
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("name", ["icr", "ql", "blockrank", "listwise"])
def test_a_reranker_named_in_the_pipeline_reranks_the_first_stage(
        tmp_path: Path, model_dir: Path, name: str) -> None:
    with SearchIndex.build(DOCS, tmp_path / "idx", source="fixture") as index:
        text = f"bm25%3 >> {name}(model='{model_dir}', dtype='float32')%2"
        stage = pipeline(index, text)
        expected = f"bm25%3 >> {name}(dtype='float32', model='{model_dir}')%2"
        assert stage.name == expected  # options in name order: the provenance names the model
        assert pipeline(index, stage.name).name == expected
        ranking = stage.search("moon tide ocean")
        first = pipeline(index, "bm25%3").search("moon tide ocean")
        assert len(ranking) == 2
        assert set(ranking.doc_ids()) <= set(first.doc_ids())
        assert ranking.provenance.pipeline == expected
        scores = [h.score for h in ranking]
        assert scores[0] > scores[1]
        with pytest.raises(NeedsFirstStageError, match="put a first stage before it"):
            pipeline(index, f"{name}(model='{model_dir}', dtype='float32')").search("x")


def test_a_reranker_is_named_by_exactly_the_options_the_text_gave(
        tmp_path: Path, model_dir: Path) -> None:
    model = f"model='{model_dir}'"
    with SearchIndex.build(DOCS, tmp_path / "idx", source="fixture") as index:
        # An option written out keeps its place in the name even at its default value.
        given = pipeline(index, f"bm25%3 >> icr({model}, layers='middle')")
        assert given.name == f"bm25%3 >> icr(layers='middle', {model})"
        assert pipeline(index, given.name).name == given.name
        # The settings' dtype is a default, not an option: the name does not show it ...
        plain = pipeline(index, f"bm25%3 >> icr({model})", dtype="float32")
        assert plain.name == f"bm25%3 >> icr({model})"
        assert str(plain.right.lm.model.dtype) == "torch.float32"  # ... yet the model uses it
        # ... and the text cannot set it as if it were one.
        with pytest.raises(PipelineError, match="icr rejected its options"):
            pipeline(index, f"bm25%3 >> icr({model}, default_dtype='float32')")
