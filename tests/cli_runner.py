"""Run the ``pursuit`` command in-process, the way a user runs it, for the CLI tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from pursuit.ui.cli import app as cli


def run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``pursuit argv`` with its cache in ``tmp_path``, no settings file, no
    ``PURSUIT_DTYPE`` from the machine, and ``env`` set; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("PURSUIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PURSUIT_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.delenv("PURSUIT_DTYPE", raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("sys.argv", ["pursuit", *argv])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
