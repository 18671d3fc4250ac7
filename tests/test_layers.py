"""The layer rules: imports point one way, and every subpackage is packaged."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["indexes", "retrievers", "rerankers", "agent", "ui"]


def _imports(path: Path, own: str) -> set[str]:
    """Layers a module of layer ``own`` imports, absolute (``pursuit.x``) or relative."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module or ""]
            elif node.level == 1:
                names = [f"pursuit.{own}"]
            else:
                names = [f"pursuit.{node.module or ''}"]
        for name in names:
            parts = name.split(".")
            if parts[0] == "pursuit" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] in ORDER:
                found.add("bare:" + parts[0])
    return found


def test_imports_point_one_way() -> None:
    violations = []
    for layer in ORDER:
        for path in sorted((ROOT / layer).rglob("*.py")):
            for target in _imports(path, layer):
                if target.startswith("bare:"):
                    violations.append(f"{path.relative_to(ROOT)} imports {target[5:]} without "
                                      "the pursuit prefix")
                elif target in ORDER and ORDER.index(target) > ORDER.index(layer):
                    violations.append(f"{path.relative_to(ROOT)} ({layer}) imports {target}")
    assert violations == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "probe.py"
    bad.write_text("from pursuit.ui.settings import Settings\nfrom ..agent import x\n"
                   "import retrievers.bm25\n", encoding="utf-8")
    assert _imports(bad, "indexes") == {"ui", "agent", "bare:retrievers"}


def test_every_subpackage_is_in_the_package_list() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {"pursuit"} | {
        "pursuit." + ".".join(p.parent.relative_to(ROOT).parts)
        for p in ROOT.rglob("__init__.py")
        if p.parent != ROOT and p.parent.relative_to(ROOT).parts[0] in ORDER
    }
    assert on_disk == listed
    assert config["tool"]["setuptools"]["package-dir"] == {"pursuit": "."}
    assert (ROOT / "py.typed").is_file()


def _module_imports(path: Path) -> set[str]:
    """Absolute ``pursuit.*`` modules that ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pursuit.")}
        elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
              and node.module.startswith("pursuit.")):
            found.add(node.module)
    return found


def test_the_web_chat_never_imports_the_command_line() -> None:
    web = sorted((ROOT / "ui" / "web").rglob("*.py"))
    assert web, "ui/web holds the web chat"
    offenders = [f"{p.relative_to(ROOT)} imports {m}" for p in web
                 for m in sorted(_module_imports(p)) if m.startswith("pursuit.ui.cli")]
    assert offenders == []


def test_every_package_says_what_it_holds_and_exports_its_public_names() -> None:
    import importlib

    for init in sorted(ROOT.rglob("__init__.py")):
        rel = init.parent.relative_to(ROOT)
        if rel.parts and rel.parts[0] not in ORDER:
            continue
        name = ".".join(("pursuit", *rel.parts))
        module = importlib.import_module(name)
        assert module.__doc__ and len(module.__doc__.strip()) > 40, f"{name} has no docstring"
        assert module.__all__, f"{name} exports nothing"
        for public in module.__all__:
            assert getattr(module, public) is not None, f"{name}.{public}"


def test_tests_mirror_the_package() -> None:
    tests = ROOT / "tests"
    folders = {p.relative_to(tests) for p in tests.rglob("*") if p.is_dir()
               and "__pycache__" not in p.parts}
    strays = sorted(str(f) for f in folders
                    if f.parts[0] != "bench" and not (ROOT / f).is_dir())
    assert strays == [], "test folders without a package folder of the same path"
