"""``import pursuit``: the documented entry point exposes the library, and stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pursuit

ROOT = Path(__file__).resolve().parents[1]


def test_every_name_the_readme_uses_is_exported() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks and all(b.startswith("import pursuit\n") for b in blocks)
    used = {m for block in blocks for m in re.findall(r"\bpursuit\.([A-Za-z_]\w*)", block)}
    assert used - set(pursuit.__all__) == set()
    assert {"SearchIndex", "pipeline", "evaluate", "compare", "build_agent"} <= used


def test_import_pursuit_loads_no_model_library() -> None:
    code = "import sys, pursuit; print(sorted(m for m in ('torch', 'transformers', 'faiss') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT.parent)
    assert out.stdout.strip() == "[]"


def test_unknown_names_fail_like_any_module() -> None:
    try:
        pursuit.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "module 'pursuit' has no attribute 'NoSuchThing'" in str(exc)
    else:
        raise AssertionError("pursuit.NoSuchThing resolved")


def test_build_search_and_evaluate_from_the_top(tmp_path: Path) -> None:
    docs = [pursuit.Doc("d1", "the moon pulls the ocean into tides"),
            pursuit.Doc("d2", "rain falls from clouds"),
            pursuit.Doc("d3", "tides rise twice a day along the coast")]
    index = pursuit.SearchIndex.build(docs, tmp_path / "idx", source="test")
    with index:
        ranking = pursuit.pipeline(index, "bm25%2").search("ocean tides")
        assert ranking.doc_ids() == ["d1", "d3"]
        result = pursuit.evaluate([ranking], {ranking.query.id: {"d3": 1}}, ["RR@10"])
        assert result.aggregate == {"RR@10": 0.5}
        own = pursuit.parse_pipeline("bm25%1", pursuit.index_stages(index))
        assert isinstance(own, pursuit.Stage) and own.search("rain").doc_ids() == ["d2"]
