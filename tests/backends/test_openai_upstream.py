"""The openai_upstream backend against a fault-injecting HTTP server on loopback.

The fake upstream here exists only to inject faults a real server will not produce on demand (a refused
first connection, a 500, a stall or a cut mid-stream, a stream without usage); the e2e test
``tests/e2e/test_openai_upstream.py`` runs the backend against a real ``vllm serve``.

Token counts are checked against transformers' own tokenizer and chat-template code on a small BPE
tokenizer trained here, not against the backend's counting code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from backends.base import (
    ChatMessage,
    ChatPrompt,
    GenerationChunk,
    GenerationRequest,
    ModelSpec,
    SamplingOptions,
    TextPrompt,
    TokenLogprob,
    TokenPrompt,
    TopLogprob,
    Usage,
    merge_chunks,
)
from backends.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ServiceError,
    UpstreamTimeout,
)
from backends.openai_upstream import OpenAIUpstreamBackend, OpenAIUpstreamOptions
from backends.registry import load_backend_class
from gateway.errors import openai_error
from tests.backends.conftest import free_port

SECRET = "sk-upstream-secret-1234"
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The capital of France is Paris. Paris is a large city on the river Seine.",
    "A quick brown fox jumps over the lazy dog while the dog sleeps in the sun.",
    "Counting tokens with the model's own tokenizer gives the numbers an engine would report.",
] * 20
MESSAGES = (ChatMessage("system", "You are terse."), ChatMessage("user", "What is the capital of France?"))
ANSWER = "The capital of France is Paris, a large city on the river Seine; the fox sleeps in the sun."


# -- a tokenizer folder (what spec.weights_path points at) --------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    # Text prompts get a BOS, as Llama-style tokenizers add one; chat prompts do not (the template is whole).
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    folder = tmp_path_factory.mktemp("weights")
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHATML,
        "bos_token": "<s>",
        "eos_token": "<|im_end|>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def reference(weights: Path) -> Any:
    """transformers' tokenizer on the same folder: the independent count."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(weights))


# -- the fault-injecting upstream ---------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ClientGone(Exception):
    """The client closed the connection while an answer was being sent."""


Reply = Callable[[Seen, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]
"""Writes one answer; returns whether the connection stays open for the next request."""


@dataclass
class FakeUpstream:
    """An HTTP/1.1 server on loopback; each POST is answered by the next scripted reply (else ``default``)."""

    port: int = 0
    served_model: str = "up"
    models_status: int = 200
    script: list[Reply] = field(default_factory=list)
    default: Reply | None = None
    requests: list[Seen] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> FakeUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in self._handlers:  # stalled answers
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(method, path, headers, json.loads(raw) if raw else None)
                if method == "GET" and path == "/v1/models":
                    body = {"object": "list", "data": [{"id": self.served_model, "object": "model"}]}
                    await json_reply(self.models_status, body)(seen, reader, writer)
                    continue
                self.requests.append(seen)
                reply = self.script.pop(0) if self.script else self.default
                assert reply is not None, "no reply scripted"
                if not await reply(seen, reader, writer):
                    return
        except ClientGone:
            self.disconnected.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


def json_reply(status: int, body: object) -> Reply:
    async def reply(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        data = json.dumps(body).encode()
        head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
        writer.write(head.encode() + data)
        await writer.drain()
        return True

    return reply


def sse_reply(
    events: list[object],
    *,
    delay_s: float = 0.0,
    stall_after: int | None = None,
    cut_after: int | None = None,
    done: bool = True,
) -> Reply:
    """A chunked SSE answer: ``events`` (dicts, or raw strings), then ``[DONE]``; it may stall (stop
    sending, connection open) or be cut (connection closed mid-body) after that many events."""

    async def reply(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        writer.write(head.encode())
        payloads = [e if isinstance(e, str) else json.dumps(e) for e in events] + (["[DONE]"] if done else [])
        for i, payload in enumerate(payloads):
            if i == stall_after:
                await asyncio.sleep(30)
            if i == cut_after:
                writer.transport.abort()
                return False
            data = f"data: {payload}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
            if delay_s:
                try:  # a read that ends means the client closed the connection
                    if not await asyncio.wait_for(reader.read(1), delay_s):
                        raise ClientGone
                except TimeoutError:
                    pass
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    return reply


def close_without_answer() -> Reply:
    async def reply(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        return False

    return reply


def no_answer() -> Reply:
    async def reply(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    return reply


def chat_event(
    index: int, content: str | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    choice = {"index": index, "delta": delta, "finish_reason": finish, **extra}
    return {"object": "chat.completion.chunk", "choices": [choice]}


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def pieces(text: str, size: int = 3) -> list[str]:
    """The text in small pieces that cut words, as tokens stream."""
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = await FakeUpstream().start()
    yield server
    await server.stop()


Make = Callable[..., Awaitable[OpenAIUpstreamBackend]]


@pytest.fixture
async def make_backend(weights: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Make]:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", SECRET)
    made: list[OpenAIUpstreamBackend] = []

    async def make(url: str, **engine: Any) -> OpenAIUpstreamBackend:
        options = {
            "base_url": url,
            "model": "up",
            "api_key_env": "TEST_UPSTREAM_KEY",
            "retry_backoff_s": 0.01,
        }
        spec = ModelSpec("m", str(weights), 2048, "cpu", engine={**options, **engine})
        backend = OpenAIUpstreamBackend.from_spec(spec)
        made.append(backend)
        await backend.start()
        return backend

    yield make
    for backend in made:
        await backend.aclose()


def chat(sampling: SamplingOptions | None = None) -> GenerationRequest:
    return GenerationRequest("req-1", ChatPrompt(MESSAGES), sampling or SamplingOptions(max_tokens=16))


async def run(
    backend: OpenAIUpstreamBackend, request: GenerationRequest
) -> tuple[list[GenerationChunk], ServiceError | None]:
    """Every chunk, and the error that ended the stream, if any."""
    chunks: list[GenerationChunk] = []
    try:
        async for chunk in backend.generate(request):
            chunks.append(chunk)
    except ServiceError as exc:
        return chunks, exc
    return chunks, None


# -- streaming passthrough ----------------------------------------------------------------------------------


async def test_chat_stream_is_passed_through_with_the_upstreams_usage(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    upstream.default = sse_reply(
        [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "usage": usage(9, 0)},
            {**chat_event(0, "Par"), "usage": usage(9, 1)},
            {**chat_event(0, "is"), "usage": usage(9, 2)},
            {**chat_event(0, ".", "stop"), "usage": usage(9, 3)},
            {"choices": [], "usage": {**usage(9, 3), "prompt_tokens_details": {"cached_tokens": 4}}},
        ]
    )
    backend = await make_backend(upstream.url)
    sampling = SamplingOptions(
        max_tokens=7, temperature=0.0, top_p=0.9, stop=("\n",), seed=3, presence_penalty=0.5, logprobs=2
    )
    chunks, error = await run(backend, GenerationRequest("req-7", ChatPrompt(MESSAGES), sampling))

    assert error is None
    assert [[(d.index, d.text, d.finish_reason) for d in c.choices] for c in chunks] == [
        [(0, "Par", None)],
        [(0, "is", None)],
        [(0, ".", "stop")],
        [],
    ]
    assert [c.usage for c in chunks] == [Usage(9, 1), Usage(9, 2), Usage(9, 3), Usage(9, 3, cached_tokens=4)]
    assert not any(c.usage and c.usage.estimated for c in chunks)
    [sent] = upstream.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.headers["x-request-id"] == "req-7"
    assert sent.body == {
        "model": "up",
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "logprobs": True,
        "top_logprobs": 2,
        "max_tokens": 7,
        "temperature": 0.0,
        "top_p": 0.9,
        "stop": ["\n"],
        "seed": 3,
        "presence_penalty": 0.5,
    }


async def test_text_and_token_prompts_go_to_completions_with_their_options(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    logprobs = {
        "tokens": ["a", "b"],
        "token_logprobs": [-0.5, -1.0],
        "top_logprobs": [{"a": -0.5}, {"b": -1.0}],
    }
    upstream.default = sse_reply(
        [
            {"choices": [{"index": 0, "text": "ab", "logprobs": logprobs}], "usage": usage(3, 2)},
            {"choices": [{"index": 0, "text": "", "finish_reason": "length"}], "usage": usage(3, 2)},
        ]
    )
    backend = await make_backend(upstream.url, continuous_usage=False)
    sampling = SamplingOptions(max_tokens=2, n=1, logprobs=1, ignore_eos=True, frequency_penalty=0.2)
    chunks, error = await run(backend, GenerationRequest("r", TextPrompt("Say ab"), sampling))
    assert error is None
    merged = merge_chunks(chunks)
    assert [(c.text, c.finish_reason) for c in merged.choices] == [("ab", "length")]
    assert merged.choices[0].logprobs == [
        TokenLogprob("a", -0.5, (TopLogprob("a", -0.5),)),
        TokenLogprob("b", -1.0, (TopLogprob("b", -1.0),)),
    ]
    assert merged.usage == Usage(3, 2)
    chunks, error = await run(backend, GenerationRequest("r", TokenPrompt((5, 6, 7)), SamplingOptions()))
    assert error is None
    text, tokens = upstream.requests
    assert text.path == tokens.path == "/v1/completions"
    assert text.body == {
        "model": "up",
        "stream": True,
        "stream_options": {"include_usage": True},
        "prompt": "Say ab",
        "logprobs": 1,
        "max_tokens": 2,
        "frequency_penalty": 0.2,
        "ignore_eos": True,
    }
    assert tokens.body["prompt"] == [5, 6, 7] and "ignore_eos" not in tokens.body


async def test_chat_logprobs_are_mapped(upstream: FakeUpstream, make_backend: Make) -> None:
    entry = {"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Hi", "logprob": -0.1}]}
    upstream.default = sse_reply(
        [chat_event(0, "Hi", "stop", logprobs={"content": [entry]}), {"usage": usage(4, 1)}]
    )
    backend = await make_backend(upstream.url)
    chunks, _ = await run(backend, chat(SamplingOptions(logprobs=1)))
    assert merge_chunks(chunks).choices[0].logprobs == [TokenLogprob("Hi", -0.1, (TopLogprob("Hi", -0.1),))]


async def test_several_choices_each_finish_once_and_bill_the_upstreams_total(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    # vLLM's per-chunk usage with n > 1 counts only that chunk's choice; only the summary is the total.
    upstream.default = sse_reply(
        [
            {**chat_event(0, "a"), "usage": usage(9, 1)},
            {**chat_event(1, "b"), "usage": usage(9, 1)},
            {**chat_event(0, "c", "stop"), "usage": usage(9, 2)},
            chat_event(0, None, "stop"),  # a second finish for choice 0 (some proxies send one): dropped
            {**chat_event(1, "d", "length"), "usage": usage(9, 2)},
            {"choices": [], "usage": usage(9, 4)},
        ]
    )
    backend = await make_backend(upstream.url)
    chunks, error = await run(backend, chat(SamplingOptions(n=2, max_tokens=2)))
    assert error is None
    finishes = [(d.index, d.finish_reason) for c in chunks for d in c.choices if d.finish_reason]
    assert finishes == [(0, "stop"), (1, "length")]
    merged = merge_chunks(chunks)
    assert [(c.index, c.text) for c in merged.choices] == [(0, "ac"), (1, "bd")]
    assert all(c.usage is not None and c.usage.estimated for c in chunks[:-1])
    assert chunks[-1].usage == Usage(9, 4) and not chunks[-1].usage.estimated
    assert upstream.requests[0].body["n"] == 2


# -- usage the upstream does not report ---------------------------------------------------------------------


async def test_without_usage_the_tokenizers_count_is_billed_and_marked_estimated(
    upstream: FakeUpstream, make_backend: Make, reference: Any
) -> None:
    parts = pieces(ANSWER)
    upstream.default = sse_reply([chat_event(0, p) for p in parts] + [chat_event(0, None, "stop")])
    backend = await make_backend(upstream.url)
    chunks, error = await run(backend, chat())
    assert error is None

    messages = [{"role": m.role, "content": m.content} for m in MESSAGES]
    prompt_ids = reference.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    final = chunks[-1].usage
    assert final == Usage(
        len(prompt_ids), len(reference.encode(ANSWER, add_special_tokens=False)), estimated=True
    )
    assert merge_chunks(chunks).choices[0].text == ANSWER
    # Every chunk carries a cumulative estimate, close to the exact count of the text sent so far.
    sent = ""
    for chunk in chunks[: len(parts)]:
        assert chunk.usage is not None and chunk.usage.estimated
        sent += chunk.choices[0].text
        exact = len(reference.encode(sent, add_special_tokens=False))
        assert abs(chunk.usage.completion_tokens - exact) <= 2, (sent, chunk.usage)


async def test_without_usage_a_text_prompt_counts_its_special_tokens(
    upstream: FakeUpstream, make_backend: Make, reference: Any
) -> None:
    upstream.default = sse_reply([{"choices": [{"index": 0, "text": " Paris.", "finish_reason": "stop"}]}])
    backend = await make_backend(upstream.url)
    prompt = "The capital of France is"
    chunks, _ = await run(backend, GenerationRequest("r", TextPrompt(prompt), SamplingOptions()))
    expected = Usage(
        len(reference.encode(prompt)), len(reference.encode(" Paris.", add_special_tokens=False))
    )
    assert chunks[-1].usage == Usage(expected.prompt_tokens, expected.completion_tokens, estimated=True)
    assert reference.encode(prompt)[0] == reference.bos_token_id  # the BOS is counted


async def test_usage_sent_only_at_the_end_replaces_the_estimates(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    upstream.default = sse_reply(
        [chat_event(0, "Par"), chat_event(0, "is.", "stop"), {"choices": [], "usage": usage(21, 3)}]
    )
    backend = await make_backend(upstream.url)
    chunks, _ = await run(backend, chat())
    assert [c.usage is not None and c.usage.estimated for c in chunks] == [True, True, False]
    assert chunks[-1].choices == [] and chunks[-1].usage == Usage(21, 3)


# -- retries before the first byte --------------------------------------------------------------------------


async def test_a_refused_first_connection_is_retried(make_backend: Make) -> None:
    port = free_port()  # nothing listens there yet: the first attempt is refused
    backend = await make_backend(f"http://127.0.0.1:{port}/v1", retries=2, retry_backoff_s=0.6)
    server = FakeUpstream(port=port, default=sse_reply([chat_event(0, "ok", "stop"), {"usage": usage(3, 1)}]))

    async def listen_soon() -> None:
        await asyncio.sleep(0.2)  # after the refused attempt, before the retry
        await server.start()

    starter = asyncio.create_task(listen_soon())
    try:
        started = time.monotonic()
        chunks, error = await run(backend, chat())
        assert error is None and merge_chunks(chunks).choices[0].text == "ok"
        assert len(server.requests) == 1 and time.monotonic() - started >= 0.6  # one backoff, then served
    finally:
        await starter
        await server.stop()


async def test_a_refused_connection_without_retries_is_backend_unavailable(make_backend: Make) -> None:
    backend = await make_backend(f"http://127.0.0.1:{free_port()}/v1", retries=0)
    chunks, error = await run(backend, chat())
    assert chunks == [] and isinstance(error, BackendUnavailable) and openai_error(error).status == 503
    assert "127.0.0.1" not in error.message


async def test_a_connection_closed_before_any_answer_is_retried(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    upstream.script = [close_without_answer()]
    upstream.default = sse_reply([chat_event(0, "ok", "stop"), {"usage": usage(3, 1)}])
    backend = await make_backend(upstream.url, retries=1)
    chunks, error = await run(backend, chat())
    assert error is None and merge_chunks(chunks).choices[0].text == "ok"
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_failing_status_is_retried_then_reported_without_upstream_details(
    upstream: FakeUpstream, make_backend: Make, status: int
) -> None:
    upstream.default = json_reply(status, {"error": {"message": f"boom at {upstream.url} with {SECRET}"}})
    backend = await make_backend(upstream.url, retries=2)
    chunks, error = await run(backend, chat())
    assert chunks == [] and len(upstream.requests) == 3
    assert isinstance(error, BackendUnavailable) and openai_error(error).code == "backend_unavailable"
    assert "boom" not in error.message and SECRET not in error.message and "127.0.0.1" not in error.message


async def test_a_500_then_an_answer_is_served(upstream: FakeUpstream, make_backend: Make) -> None:
    upstream.script = [json_reply(500, {"error": {"message": "warming up"}})]
    upstream.default = sse_reply([chat_event(0, "ok", "stop"), {"usage": usage(3, 1)}])
    backend = await make_backend(upstream.url, retries=1)
    chunks, error = await run(backend, chat())
    assert error is None and chunks[-1].usage == Usage(3, 1) and len(upstream.requests) == 2


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_misconfiguration_is_unavailable_without_retry_or_leak(
    upstream: FakeUpstream, make_backend: Make, status: int
) -> None:
    upstream.default = json_reply(status, {"error": {"message": f"bad key {SECRET} for {upstream.url}"}})
    backend = await make_backend(upstream.url, retries=2)
    chunks, error = await run(backend, chat())
    assert chunks == [] and len(upstream.requests) == 1
    assert isinstance(error, BackendUnavailable) and openai_error(error).status == 503
    assert SECRET not in error.message and "127.0.0.1" not in error.message


# -- client errors from the upstream ------------------------------------------------------------------------


async def test_a_400_becomes_invalid_request_with_the_upstreams_message(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    message = "top_logprobs must be at most 5"
    upstream.default = json_reply(
        400, {"error": {"message": message, "type": "BadRequestError", "param": "top_logprobs", "code": 400}}
    )
    backend = await make_backend(upstream.url, retries=2)
    chunks, error = await run(backend, chat())
    assert chunks == [] and len(upstream.requests) == 1
    assert type(error) is InvalidRequest and openai_error(error).status == 400
    assert (error.message, error.param, openai_error(error).code) == (message, "top_logprobs", None)


async def test_a_context_length_400_becomes_context_length_exceeded(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    message = (
        "This model's maximum context length is 2048 tokens. However, your prompt contains 3000 input tokens."
    )
    upstream.default = json_reply(
        400, {"error": {"message": message, "type": "BadRequestError", "code": 400}}
    )
    backend = await make_backend(upstream.url)
    _, error = await run(backend, chat())
    assert isinstance(error, ContextLengthExceeded) and error.message == message
    assert (openai_error(error).code, error.param) == ("context_length_exceeded", "messages")


async def test_a_422_validation_body_becomes_invalid_request(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    detail = [{"loc": ["body", "temperature"], "msg": "Input should be less than or equal to 2"}]
    upstream.default = json_reply(422, {"detail": detail})
    backend = await make_backend(upstream.url)
    _, error = await run(backend, chat())
    assert type(error) is InvalidRequest and error.message == "Input should be less than or equal to 2"


async def test_an_error_event_before_any_text_is_raised_before_the_first_chunk(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    error_event = {"error": {"message": "bad stop sequence", "type": "BadRequestError", "code": 400}}
    upstream.default = sse_reply([error_event], done=False)
    backend = await make_backend(upstream.url)
    chunks, error = await run(backend, chat())
    assert chunks == [] and type(error) is InvalidRequest and error.message == "bad stop sequence"


# -- failures after the first byte --------------------------------------------------------------------------


async def test_a_stall_mid_stream_times_out_after_the_chunks_already_sent(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    upstream.default = sse_reply(
        [chat_event(0, "one "), chat_event(0, "two "), chat_event(0, "x", "stop")], stall_after=2
    )
    backend = await make_backend(upstream.url, read_timeout_s=0.5, retries=2)
    started = time.monotonic()
    chunks, error = await run(backend, chat())
    assert [c.choices[0].text for c in chunks] == ["one ", "two "]
    assert (
        isinstance(error, UpstreamTimeout)
        and openai_error(error).status == 504
        and openai_error(error).type == "timeout"
    )
    assert 0.5 <= time.monotonic() - started < 5 and len(upstream.requests) == 1  # never retried


async def test_an_upstream_silent_before_the_first_byte_times_out(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    upstream.default = no_answer()
    backend = await make_backend(upstream.url, read_timeout_s=0.5, retries=2)
    chunks, error = await run(backend, chat())
    assert chunks == [] and isinstance(error, UpstreamTimeout) and len(upstream.requests) == 1


async def test_a_request_that_finds_every_connection_busy_past_its_wait_is_refused_as_overloaded(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    events = [chat_event(0, f"{i} ") for i in range(20)] + [chat_event(0, "end", "stop")]
    upstream.default = sse_reply(events, delay_s=0.1)  # 2 s of answer, never silent for long
    backend = await make_backend(
        upstream.url, max_connections=1, read_timeout_s=0.5, connect_timeout_s=0.2, retries=2
    )
    holding = asyncio.create_task(run(backend, chat()))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    chunks, error = await run(backend, chat())
    waited = time.monotonic() - started
    assert chunks == [] and isinstance(error, BackendUnavailable), error
    assert "Too many requests are waiting" in error.message and 0.6 <= waited < 1.5  # once, not retried
    held, held_error = await holding
    assert held_error is None and "".join(c.choices[0].text for c in held if c.choices).endswith("end")
    assert len(upstream.requests) == 1


async def test_a_stream_cut_mid_way_ends_with_an_error_after_the_chunks_sent(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    upstream.default = sse_reply(
        [chat_event(0, "one "), chat_event(0, "two "), chat_event(0, "x", "stop")], cut_after=2
    )
    backend = await make_backend(upstream.url, retries=2)
    chunks, error = await run(backend, chat())
    assert [c.choices[0].text for c in chunks] == ["one ", "two "]
    assert isinstance(error, BackendUnavailable) and len(upstream.requests) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0  # billed for what was sent


async def test_a_stream_that_ends_without_finishing_is_an_error(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    upstream.default = sse_reply([chat_event(0, "one ")])  # [DONE] but no finish_reason
    backend = await make_backend(upstream.url)
    chunks, error = await run(backend, chat())
    assert len(chunks) == 1 and isinstance(error, BackendUnavailable)


async def test_an_error_event_mid_stream_is_raised_after_the_chunks_sent(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    error_event = {"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}
    upstream.default = sse_reply([chat_event(0, "one "), error_event], done=False)
    backend = await make_backend(upstream.url)
    chunks, error = await run(backend, chat())
    assert len(chunks) == 1 and isinstance(error, BackendUnavailable) and "engine died" not in error.message


@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_a_consumer_that_stops_closes_the_upstream_request(
    upstream: FakeUpstream, make_backend: Make, how: str
) -> None:
    upstream.default = sse_reply([chat_event(0, f"t{i} ") for i in range(50)], delay_s=0.2)
    backend = await make_backend(upstream.url)
    stream = backend.generate(chat())
    first = await anext(stream)
    assert first.choices[0].text == "t0 "
    if how == "aclose":  # the client went away: the gateway closes the stream
        await stream.aclose()  # type: ignore[attr-defined]
    else:  # the replica cancels the task that pumps the stream (backends.replica.coalesce)
        pump = asyncio.create_task(anext(stream))
        await asyncio.sleep(0.05)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    # The answer would take 10 s more; the upstream sees the connection close at once.
    await asyncio.wait_for(upstream.disconnected.wait(), 2)


# -- health, start and options ------------------------------------------------------------------------------


async def test_health_checks_the_model_list(upstream: FakeUpstream, make_backend: Make) -> None:
    backend = await make_backend(upstream.url)
    await backend.check_health()
    upstream.served_model = "other"
    with pytest.raises(BackendUnavailable, match="does not serve 'up'"):
        await backend.check_health()
    upstream.models_status = 503
    with pytest.raises(BackendUnavailable):
        await backend.check_health()


async def test_start_refuses_a_misconfigured_upstream(upstream: FakeUpstream, make_backend: Make) -> None:
    upstream.served_model = "other"
    with pytest.raises(BackendUnavailable, match="does not serve 'up'"):
        await make_backend(upstream.url)
    upstream.served_model, upstream.models_status = "up", 401
    with pytest.raises(BackendUnavailable, match="401"):
        await make_backend(upstream.url)


async def test_start_tolerates_an_upstream_that_is_down_and_health_reports_it(make_backend: Make) -> None:
    backend = await make_backend(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(BackendUnavailable, match="unreachable"):
        await backend.check_health()


async def test_start_needs_the_key_variable(upstream: FakeUpstream, make_backend: Make) -> None:
    with pytest.raises(RuntimeError, match="MISSING_KEY_VAR"):
        await make_backend(upstream.url, api_key_env="MISSING_KEY_VAR")


def test_options_keep_secrets_out_of_the_catalog() -> None:
    base = {"base_url": "http://127.0.0.1:8000/v1/", "model": "up"}
    assert OpenAIUpstreamOptions.model_validate(base).base_url == "http://127.0.0.1:8000/v1"
    for bad in (
        {"api_key_env": "sk-abc123-xyz"},  # a key pasted where the variable's name belongs
        {"headers": {"Authorization": "Bearer sk-abc"}},
        {"base_url": "127.0.0.1:8000/v1"},
        {"timeout": 3},
        {"retries": -1},
    ):
        with pytest.raises(ValidationError):
            OpenAIUpstreamOptions.model_validate({**base, **bad})


def test_the_registry_and_the_benchmark_catalog_find_the_backend(tmp_path: Path) -> None:
    from benchmarks.overhead import OPENAI_UPSTREAM_CATALOG, _render

    assert load_backend_class("openai_upstream") is OpenAIUpstreamBackend
    data = _render(OPENAI_UPSTREAM_CATALOG, WEIGHTS_DIR=str(tmp_path), UPSTREAM="http://127.0.0.1:9/v1")
    engine = yaml.safe_load(yaml.safe_dump(data))["models"][0]["deployments"][0]["engine"]
    assert OpenAIUpstreamOptions.model_validate(engine).model == "mock"  # the name the mock lists


# -- whole answers (the caller did not ask for a stream) -----------------------------------------------------


def whole_chat(content: str, *, with_usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
    }
    if with_usage:
        body["usage"] = usage(21, 9)
    return body


async def test_a_whole_answer_is_asked_for_unstreamed_and_carries_the_upstreams_usage(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    upstream.default = json_reply(200, whole_chat(ANSWER))
    backend = await make_backend(upstream.url)
    request = GenerationRequest("req-w", ChatPrompt(MESSAGES), SamplingOptions(max_tokens=16), whole=True)
    chunks, error = await run(backend, request)
    assert error is None and len(chunks) == 1
    assert upstream.requests[-1].body["stream"] is False
    assert "stream_options" not in upstream.requests[-1].body
    assert chunks[0].choices[0].text == ANSWER and chunks[0].choices[0].finish_reason == "stop"
    assert chunks[0].usage == Usage(21, 9)


async def test_a_whole_answer_without_usage_is_counted_and_marked_estimated(
    upstream: FakeUpstream, make_backend: Make, reference: Any
) -> None:
    upstream.default = json_reply(200, whole_chat(ANSWER, with_usage=False))
    backend = await make_backend(upstream.url)
    request = GenerationRequest("req-w", ChatPrompt(MESSAGES), SamplingOptions(max_tokens=16), whole=True)
    chunks, error = await run(backend, request)
    assert error is None
    final = chunks[-1].usage
    assert final is not None and final.estimated
    assert final.completion_tokens == len(reference.encode(ANSWER, add_special_tokens=False))


async def test_a_whole_answer_is_retried_after_a_500_and_times_out_on_its_own_limit(
    upstream: FakeUpstream, make_backend: Make
) -> None:
    upstream.script = [json_reply(500, {"error": {"message": "busy"}})]
    upstream.default = json_reply(200, whole_chat(ANSWER))
    backend = await make_backend(upstream.url)
    request = GenerationRequest("req-w", ChatPrompt(MESSAGES), whole=True)
    chunks, error = await run(backend, request)
    assert error is None and chunks[0].choices[0].text == ANSWER
    upstream.default = no_answer()
    slow = await make_backend(upstream.url, answer_timeout_s=0.3, retries=0)
    _, error = await run(slow, request)
    assert isinstance(error, UpstreamTimeout)
