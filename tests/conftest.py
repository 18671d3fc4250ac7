"""Shared fixtures: paths to the real benchmark data and offline settings.

Tests mirror the package (``tests/retrievers/lm/test_causal.py`` tests
``retrievers/lm/causal.py``); the helpers they share (``tiny_lm``, ``tiny_bm25``,
``scripted_agent``, ``chat_server``, ``cli_runner``, ``polling``) sit here, at the top
of ``tests/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Test modules are imported by path (--import-mode=importlib); the shared helpers by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; CI has it, so its absence is a failure, not a skip."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"benchmark data not found at {SHARED_DATA}; it must sit beside the project")
    return SHARED_DATA
