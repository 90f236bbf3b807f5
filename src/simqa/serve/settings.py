"""What a server worker needs to know, carried through environment variables.

``uvicorn --workers N`` starts each worker from an import string, so the settings the
``simqa serve`` command was given travel to the workers as ``SIMQA_SERVE_*`` variables
(and the usual ``SIMQA_WRITE_TOKEN``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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

INDEX_VAR = "SIMQA_SERVE_INDEX"
TOKEN_VAR = "SIMQA_WRITE_TOKEN"
MAX_BODY_VAR = "SIMQA_SERVE_MAX_BODY"


@dataclass(frozen=True)
class Settings:
    index: str
    write_token: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES

    def __post_init__(self) -> None:
        check_token(self.write_token)
        if self.max_body_bytes < 1024:
            raise SimqaError(
                f"the body size limit must be 1024 bytes or more: {self.max_body_bytes}"
            )

    @classmethod
    def from_env(cls) -> Settings:
        index = os.environ.get(INDEX_VAR)
        if not index:
            raise SimqaError(f"{INDEX_VAR} is not set: start the server with simqa serve")
        limit = os.environ.get(MAX_BODY_VAR, str(MAX_BODY_BYTES))
        if not limit.isdigit():
            raise SimqaError(f"{MAX_BODY_VAR} must be a whole number of bytes, got {limit!r}")
        return cls(index, os.environ.get(TOKEN_VAR) or None, int(limit))

    def to_env(self) -> dict[str, str]:
        env = {INDEX_VAR: self.index, MAX_BODY_VAR: str(self.max_body_bytes)}
        if self.write_token:
            env[TOKEN_VAR] = self.write_token
        return env


def check_token(token: str | None) -> None:
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise SimqaError(
            f"the write token must be at least {MIN_TOKEN_CHARS} characters "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
