"""The ``openai_upstream`` backend's engine options, as a catalog deployment sets them (validated, frozen)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_BACKOFF_S = 5.0
"""The longest wait between two attempts, whatever the backoff or the upstream's Retry-After says."""


class OpenAIUpstreamOptions(BaseModel):
    """Engine options a catalog deployment sets for the ``openai_upstream`` backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        description="The upstream's OpenAI API root, e.g. http://10.0.0.5:8000/v1 (http:// or https://)."
    )
    model: str = Field(min_length=1, description="The model name the upstream serves (sent as `model`).")
    api_key_env: str | None = Field(
        default=None,
        pattern=_ENV_NAME,
        description="Name of the environment variable that holds the upstream's API key (never the key).",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Longest wait to open a connection.")
    read_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait for the next bytes of an answer, the first token included.",
    )
    answer_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Longest wait for a whole answer, when the caller did not ask for a stream.",
    )
    retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Extra attempts after a refused connection, 429 or 5xx, only before the first byte.",
    )
    retry_backoff_s: float = Field(
        default=0.2, ge=0, le=MAX_BACKOFF_S, description="Wait before the first retry; doubled each time."
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        description=(
            "Connections one replica opens to the upstream at most; more requests wait for a free one "
            "(up to read_timeout_s)."
        ),
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers for every call; not for secrets (the key comes from api_key_env).",
    )
    continuous_usage: bool = Field(
        default=True,
        description=(
            "Ask for usage on every chunk (stream_options.continuous_usage_stats, honoured by vLLM and "
            "SGLang); turn off for an upstream that rejects unknown fields."
        ),
    )

    structured_outputs: bool = Field(
        default=False,
        description=(
            "The upstream enforces response_format json_object / json_schema and tool_choice 'required' "
            "or a named function (OpenAI's API, vLLM's and SGLang's servers do): such requests are passed "
            "on, and what comes back is checked against the schema (502 when it does not fit). Off: they "
            "are placed on the model's other deployments, or refused with a 400."
        ),
    )
    tool_choice_auto: bool = Field(
        default=False,
        description=(
            "The upstream reads the tool calls a model writes on its own (tool_choice 'auto'), as OpenAI's "
            "API or vLLM started with --enable-auto-tool-choice does; the calls that come back are checked "
            "against the tools offered."
        ),
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("base_url must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return value.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        if any(name.lower() in ("authorization", "api-key", "x-api-key") for name in value):
            raise ValueError("credentials do not belong in the catalog: set api_key_env instead")
        return value
