"""Settings: the only place pursuit reads environment variables.

Precedence, highest first: command-line flags, environment variables (``PURSUIT_*``), a
TOML settings file (``PURSUIT_CONFIG`` or ``~/.config/pursuit/config.toml``), defaults.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from pursuit.indexes.errors import PursuitError
from pursuit.retrievers.lm.dtypes import DtypeError, dtype_name


@dataclass(frozen=True)
class Settings:
    """Everything configurable about a pursuit process.

    Attributes:
        cache_dir: Where converted models and automatically built dataset indexes live.
        demo_index: The demo index directory that ``make demo`` builds.
        encoder: Default dense encoder (hub id, local path, or the packaged default).
        factory: Default FAISS factory string for new indexes.
        host / port: Where ``pursuit serve`` listens.
        llm: The agent's chat model (packaged name, hub id or path) when ``llm_url`` is empty.
        llm_url: Base URL of an OpenAI-compatible server (``http://127.0.0.1:8080/v1``); when
            set, the agent plans and answers through it instead of an in-process model.
        llm_api_key: Bearer key for ``llm_url`` (empty: none).
        llm_served: The model name the server at ``llm_url`` serves.
        threads: SQLite file where conversation threads are kept (empty: under cache_dir).
            The web chat keeps its conversations in ``chat.sqlite`` beside it.
        index: The index ``pursuit serve`` answers from (empty: ``demo_index``).
        token: Bearer token every ``/api/*`` request of the web chat must send (empty: none).
        max_request_bytes: Largest request body the web chat accepts (larger: 413).
        max_runs: Agent runs the web chat works on at once (more: 429).
        cors_origins: Comma-separated origins allowed to call the API from other pages
            (empty: CORS off, so only the page the server itself serves can).
        allowed_hosts: Comma-separated host names the web chat answers besides loopback
            names and ``host`` (``*``: any); a request naming another host gets 400, so a
            DNS-rebinding page cannot read a local server.
        heartbeat_s: Seconds a chat stream may stay quiet before a ``heartbeat`` event.
        dtype: What in-process models compute in (the chat model, the rerankers, the
            encoder of new indexes): ``auto`` (bfloat16 on CUDA GPUs that support it and on
            CPUs with AVX512-BF16 or AMX, float32 elsewhere), ``bfloat16``, ``float32`` or
            ``float16``. A pipeline's own option (``icr(dtype=float32)``) wins over it.
    """

    cache_dir: Path = Path.home() / ".cache" / "pursuit"
    demo_index: Path = Path("demo-index")
    encoder: str = "all-MiniLM-L6-v2"
    factory: str = "Flat"
    host: str = "127.0.0.1"
    port: int = 8000
    llm: str = "qwen2.5-coder-1.5b"
    llm_url: str = ""
    llm_api_key: str = ""
    llm_served: str = "default"
    threads: str = ""
    index: str = ""
    token: str = ""
    max_request_bytes: int = 65_536
    max_runs: int = 4
    cors_origins: str = ""
    allowed_hosts: str = ""
    heartbeat_s: float = 3.0
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.token and not self.token.strip():
            raise PursuitError("setting token is blank, so no request could ever send it; "
                               "give a token of visible characters, or none")
        try:  # a typo in PURSUIT_DTYPE or the settings file fails here, naming the setting
            object.__setattr__(self, "dtype", dtype_name(self.dtype))
        except DtypeError as exc:
            raise PursuitError(f"setting dtype: {exc}") from None

    @property
    def threads_path(self) -> Path:
        """Where threads are kept: ``threads`` or ``cache_dir/threads.sqlite``."""
        return Path(self.threads).expanduser() if self.threads else self.cache_dir / "threads.sqlite"

    @property
    def index_path(self) -> Path:
        """The index the web chat serves: ``index`` or ``demo_index``."""
        return Path(self.index).expanduser() if self.index else self.demo_index

    @property
    def chat_path(self) -> Path:
        """The web chat's conversations: ``chat.sqlite`` beside the threads file."""
        return self.threads_path.with_name("chat.sqlite")

    @property
    def cors_list(self) -> list[str]:
        """``cors_origins`` as a list (empty: CORS off)."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def with_overrides(self, values: Mapping[str, Any]) -> Settings:
        """A copy with the non-``None`` entries of ``values`` applied (typed by field)."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if value is None:
                continue
            if key not in known:
                raise PursuitError(f"unknown setting {key!r}; known settings: {', '.join(known)}")
            default = getattr(self, key)
            try:
                changes[key] = type(default)(value) if not isinstance(default, Path) else Path(value).expanduser()
            except (TypeError, ValueError) as exc:
                raise PursuitError(f"setting {key!r} must be a {type(default).__name__}, "
                                   f"got {value!r}") from exc
        return replace(self, **changes)


def load_settings(flags: Mapping[str, Any] | None = None, *,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings from the file, the environment and ``flags``.

    Example:
        >>> load_settings({"port": 9000}, environ={}).port
        9000
    """
    env = os.environ if environ is None else environ
    settings = Settings()
    config = env.get("PURSUIT_CONFIG")
    path = Path(config).expanduser() if config else Path.home() / ".config" / "pursuit" / "config.toml"
    if path.is_file():
        try:
            settings = settings.with_overrides(tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise PursuitError(f"{path}: not valid TOML ({exc})") from exc
    if "XDG_CACHE_HOME" in env and "PURSUIT_CACHE_DIR" not in env:
        settings = replace(settings, cache_dir=Path(env["XDG_CACHE_HOME"]) / "pursuit")
    from_env = {f.name: env.get(f"PURSUIT_{f.name.upper()}") for f in fields(Settings)}
    settings = settings.with_overrides(from_env)
    return settings.with_overrides(flags or {})
