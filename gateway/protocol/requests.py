"""Request bodies of the OpenAI endpoints, validated at the edge and turned into backend requests."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from backends.base import (
    ChatMessage,
    ChatPrompt,
    Prompt,
    SamplingOptions,
    TextPrompt,
    TokenPrompt,
    ToolCall,
)
from backends.tools import StructuredOutput, ToolPlan
from gateway.errors import InvalidRequest
from gateway.protocol.tools import (
    MessageToolCall,
    ResponseFormat,
    ToolChoice,
    ToolDefinition,
    structured_output,
    tool_plan,
)

ServiceTier = Literal["auto", "default", "flex", "scale", "priority"]
"""OpenAI's ``service_tier`` values (as ``gateway.catalog.policy.ServiceTier``, which maps them to SLOs)."""
MAX_N = 16
MAX_STOP = 16
MAX_TOP_LOGPROBS = 20


class _Request(BaseModel):
    # Unknown fields are ignored, as OpenAI-compatible servers do, so newer clients keep working.
    model_config = ConfigDict(extra="ignore")


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None

    def to_backend(self) -> ChatMessage:
        if isinstance(self.content, list):
            text = "".join(part.text for part in self.content)
        else:
            text = self.content or ""
        role = "system" if self.role == "developer" else self.role
        calls = tuple(
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in self.tool_calls or ()
        )
        return ChatMessage(role=role, content=text, tool_calls=calls, tool_call_id=self.tool_call_id)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
# Counts a ledger row and an engine can hold; a context check refuses what the model cannot fit.
TokenCount = Annotated[int, Field(ge=1, le=2**31 - 1)]
TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
# OpenAI's published range for ``seed``: a signed 64-bit integer.
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class _SamplingFields(_Request):
    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 1
    stop: str | list[str] | None = None
    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    max_tokens: TokenCount | None = None
    user: str | None = None
    service_tier: ServiceTier | None = None
    """The TTFT SLO tier asked for (the model's ``routing.service_tiers``); it orders the request in its
    tenant's queue and weighs in placement."""
    ignore_eos: bool = False  # vLLM's extension, used by benchmark clients

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences are allowed")
        return value

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def _stop_tuple(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in stops if s)

    def _sampling(self, max_tokens: int | None, logprobs: int | None) -> SamplingOptions:
        return SamplingOptions(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            n=self.n,
            stop=self._stop_tuple(),
            seed=self.seed,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            logprobs=logprobs,
            ignore_eos=self.ignore_eos,
        )


class ChatCompletionRequest(_SamplingFields):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: TokenCount | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        return self

    def unsupported(self) -> InvalidRequest | None:
        return _unanswered_tool_messages(self.messages)

    def tool_plan(self) -> ToolPlan | None:
        """The tools and tool choice (400s for bad tool definitions or choices)."""
        return tool_plan(self.tools, self.tool_choice, self.parallel_tool_calls)

    def structured(self) -> StructuredOutput | None:
        """``response_format`` as a decoding constraint (400 for a schema that is not a JSON schema)."""
        return structured_output(self.response_format)

    def prompt(self, plan: ToolPlan | None = None) -> Prompt:
        return ChatPrompt(
            messages=tuple(m.to_backend() for m in self.messages), tools=plan.tools if plan else ()
        )

    def sampling(self) -> SamplingOptions:
        logprobs = (self.top_logprobs or 0) if self.logprobs else None
        return self._sampling(self.max_completion_tokens or self.max_tokens, logprobs)


def _unanswered_tool_messages(messages: list[Message]) -> InvalidRequest | None:
    """A ``tool`` message must answer a call an earlier assistant message made (OpenAI's rule)."""
    called: set[str] = set()
    for i, message in enumerate(messages):
        if message.role == "assistant":
            called.update(c.id for c in message.tool_calls or ())
        elif message.role == "tool":
            if message.tool_call_id is None:
                return InvalidRequest(
                    f"Invalid value for 'messages[{i}]': a message with role 'tool' needs 'tool_call_id'.",
                    param=f"messages[{i}].tool_call_id",
                )
            if message.tool_call_id not in called:
                return InvalidRequest(
                    f"Invalid parameter: messages with role 'tool' must be a response to a preceding "
                    f"message with 'tool_calls'; no call has the id '{message.tool_call_id}'.",
                    param=f"messages[{i}].tool_call_id",
                )
    return None


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[TokenId] = Field(min_length=1)
    logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def unsupported(self) -> InvalidRequest | None:
        if self.echo:
            return InvalidRequest("echo is not supported.", param="echo")
        if self.suffix:
            return InvalidRequest("suffix is not supported.", param="suffix")
        if self.best_of is not None and self.best_of != self.n:
            return InvalidRequest("best_of other than n is not supported.", param="best_of")
        batched = isinstance(self.prompt, list) and len(self.prompt) > 1
        if batched and isinstance(self.prompt[0], str):
            return InvalidRequest(
                "Send one prompt per request; batched prompts are not supported.", param="prompt"
            )
        return None

    def to_prompt(self) -> Prompt:
        if isinstance(self.prompt, str):
            return TextPrompt(self.prompt)
        first = self.prompt[0]
        if isinstance(first, str):
            return TextPrompt(first)
        return TokenPrompt(tuple(int(t) for t in self.prompt))

    def sampling(self) -> SamplingOptions:
        # OpenAI's legacy completions default to 16 tokens.
        return self._sampling(self.max_tokens if self.max_tokens is not None else 16, self.logprobs)
