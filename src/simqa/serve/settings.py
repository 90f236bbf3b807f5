"""Every setting of ``simqa serve``, in one model, from one place.

``Settings.load`` reads, highest first: the command line's flags, ``SIMQA_*`` environment
variables (``SIMQA_PORT``, ``SIMQA_CORS_ORIGINS``, ...), then a TOML settings file
(``--config FILE`` or ``SIMQA_CONFIG``: the same names, ``port = 8000``), then the
defaults; a bad value stops the server before it starts, in one line that says where the
value came from. The parent ``simqa serve`` hands the validated settings to its workers in
``SIMQA_SERVE_SETTINGS`` (JSON, without the write token, which travels as
``SIMQA_WRITE_TOKEN``); ``/v1/info`` shows them without the token (``public``).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from simqa.errors import SimqaError

#: request bodies above this many bytes are refused with 413 (a batch of 1,000 typical
#: consultations is about 2 MB; split larger uploads)
MAX_BODY_BYTES = 8 * 1024 * 1024
#: the most hits one request can ask for
MAX_K = 100
#: the most queries in one POST /v1/search
MAX_BATCH = 256
#: a write token shorter than this is refused: it would be guessable
MIN_TOKEN_CHARS = 16
#: what a box may be kept for: 30 s, then asked again with If-None-Match (a 304 if the
#: index has not changed); a consultation taken down leaves caches within 30 s
CACHE_CONTROL = "max-age=30, must-revalidate"

TOKEN_TOO_SHORT = (
    f"the write token must be at least {MIN_TOKEN_CHARS} characters "
    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
)

PREFIX = "SIMQA_"
TOKEN_VAR = "SIMQA_WRITE_TOKEN"
CONFIG_VAR = "SIMQA_CONFIG"
#: the parent's validated settings, for its workers (JSON, without the token)
WORKER_VAR = "SIMQA_SERVE_SETTINGS"
#: what the workers read before the settings model (still read by ``app_from_env``)
INDEX_VAR = "SIMQA_SERVE_INDEX"
MAX_BODY_VAR = "SIMQA_SERVE_MAX_BODY"

#: the settings file being read by ``Settings.load`` (a source of the model)
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("simqa_serve_config", default=None)
#: False while ``Settings.of`` validates given values alone
_OUTSIDE: ContextVar[bool] = ContextVar("simqa_serve_outside", default=True)
_ORIGIN = re.compile(r"(\*|https?://[^/\s?#]+)")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


class Settings(BaseSettings):
    """What ``simqa serve`` runs with. Flag ``--cors-origin`` (repeatable) fills
    ``cors_origins``; every other flag is the setting's name with dashes."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
    )

    index: str = Field("default", description="Index name (a folder under ./indexes) or path.")
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    workers: int = Field(1, ge=1, le=256, description="Worker processes, one index each.")
    write_token: SecretStr | None = Field(
        None,
        description="Accept writes with Authorization: Bearer TOKEN (off without one; "
        f"{MIN_TOKEN_CHARS} characters or more). Never shown by /v1/info.",
    )
    access_log: bool = Field(True, description="Log every request.")
    max_body_bytes: int = Field(
        MAX_BODY_BYTES, description="Refuse request bodies over this many bytes (413)."
    )
    cache_control: str = Field(
        CACHE_CONTROL,
        description="Cache-Control of a read's 200 and 304 answers ('' sends none); errors "
        "and writes are always no-store.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (https://site.example) whose pages may read boxes from this "
        "server; * for any. Comma-separated in SIMQA_CORS_ORIGINS.",
    )
    cors_writes: bool = Field(
        False, description="Also let those origins write (POST, DELETE with the token)."
    )
    metrics: bool = Field(True, description="Serve Prometheus metrics at /metrics.")
    shutdown_timeout: float = Field(
        30.0,
        gt=0,
        description="On SIGTERM, seconds to wait for requests in flight before cutting them off.",
    )

    @field_validator("write_token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(TOKEN_TOO_SHORT)
        return token

    @field_validator("max_body_bytes")
    @classmethod
    def _body_limit(cls, limit: int) -> int:
        if limit < 1024:
            raise ValueError(f"the body size limit must be 1024 bytes or more: {limit}")
        return limit

    @field_validator("cache_control")
    @classmethod
    def _header_value(cls, value: str) -> str:
        if not _HEADER_VALUE.fullmatch(value):
            raise ValueError("cache_control must be printable ASCII on one line")
        return value.strip()

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):  # SIMQA_CORS_ORIGINS="https://a.example,https://b.example"
            return [part for part in re.split(r"[,\s]+", value) if part]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port], no path or "
                    "trailing slash (https://site.example), or *"
                )
        return list(dict.fromkeys(origins))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then the environment, then the settings file (if one is given)."""
        if not _OUTSIDE.get():
            return (init_settings,)
        config = _CONFIG_FILE.get()
        if config is None:
            return init_settings, env_settings
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config)

    # --- where settings come from ---------------------------------------------------------

    @classmethod
    def load(
        cls, flags: dict[str, Any] | None = None, config: str | Path | None = None
    ) -> Settings:
        """The settings from ``flags`` (None: not given), ``SIMQA_*`` variables and the
        settings file ``config`` (or ``$SIMQA_CONFIG``); SimqaError in one line if a value
        is bad or the file cannot be read."""
        given = {name: value for name, value in (flags or {}).items() if value is not None}
        unknown = set(given) - set(cls.model_fields)
        if unknown:
            raise SimqaError(f"unknown settings: {', '.join(sorted(unknown))}")
        path = config or os.environ.get(CONFIG_VAR) or None
        data: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            data = read_config(path)
        token = _CONFIG_FILE.set(path)
        try:
            return cls(**given)
        except ValidationError as exc:
            raise SimqaError(explain(exc, given, data, path)) from None
        finally:
            _CONFIG_FILE.reset(token)

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings from these values and the defaults alone (no environment, no file)."""
        token = _OUTSIDE.set(False)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SimqaError(explain(exc, values, {}, None)) from None
        finally:
            _OUTSIDE.reset(token)

    @classmethod
    def from_env(cls) -> Settings:
        """A worker's settings: what its parent ``simqa serve`` validated, or (a server
        started as ``uvicorn simqa.serve.app:app_from_env --factory``) ``Settings.load``
        with the variables workers used to read."""
        handed = os.environ.get(WORKER_VAR)
        if handed:
            return cls.of(**json.loads(handed), write_token=os.environ.get(TOKEN_VAR) or None)
        legacy = {"index": os.environ.get(INDEX_VAR), "max_body_bytes": None}
        limit = os.environ.get(MAX_BODY_VAR)
        if limit is not None and f"{PREFIX}MAX_BODY_BYTES" not in os.environ:
            if not limit.isdigit():
                raise SimqaError(f"{MAX_BODY_VAR} must be a whole number of bytes, got {limit!r}")
            legacy["max_body_bytes"] = int(limit)
        if f"{PREFIX}INDEX" in os.environ:
            legacy["index"] = None
        return cls.load(legacy)

    def to_env(self) -> dict[str, str]:
        """What a worker process needs in its environment to run with these settings."""
        env = {WORKER_VAR: self.model_dump_json(exclude={"write_token"})}
        if self.write_token is not None:
            env[TOKEN_VAR] = self.write_token.get_secret_value()
        return env

    # --- what the server shows -------------------------------------------------------------

    @property
    def token(self) -> str | None:
        return self.write_token.get_secret_value() if self.write_token is not None else None

    def public(self) -> dict[str, Any]:
        """The effective settings for ``/v1/info``: no token, no server paths."""
        shown = self.model_dump(mode="json", exclude={"write_token", "index"})
        shown["writes"] = self.write_token is not None
        return shown


def read_config(path: Path) -> dict[str, Any]:
    """A settings file's table, or SimqaError saying why it cannot be used."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SimqaError(f"settings file {path} not found") from None
    except OSError as exc:
        raise SimqaError(f"settings file {path} is unreadable: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SimqaError(f"settings file {path} is not valid TOML: {exc}") from None
    return data


def explain(
    exc: ValidationError, flags: dict[str, Any], data: dict[str, Any], path: Path | None
) -> str:
    """The first problem, in one line, naming the flag, variable or file line it came from."""
    problems = exc.errors()
    first = problems[0]
    name = str(first["loc"][0]) if first["loc"] else "settings"
    if first["type"] == "extra_forbidden":
        known = ", ".join(Settings.model_fields)
        where = f"in {path}" if path is not None else "given"
        return f"unknown setting {name!r} {where} (known: {known})"
    message = str(first["msg"]).removeprefix("Value error, ")
    env = f"{PREFIX}{name.upper()}"
    if name in flags:
        where = "--cors-origin" if name == "cors_origins" else "--" + name.replace("_", "-")
        value = flags[name]
    elif os.environ.get(env):
        where, value = env, os.environ[env]
    elif name in data:
        where, value = f"{name} in {path}", data[name]
    else:
        where, value = name, first.get("input")
    if name == "write_token":  # its value is never printed
        return f"{message} ({where})"
    if first["type"] == "value_error":  # our own messages name the value already
        return f"{message} ({where})"
    return f"{where}: {message}, got {value!r}"


def check_token(token: str | None) -> None:
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise SimqaError(TOKEN_TOO_SHORT)
