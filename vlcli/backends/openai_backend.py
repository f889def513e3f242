"""The `openai` text generator: any OpenAI-compatible chat server (`vllm serve`, hosted APIs, the stub).

Requests go out concurrently (at most `concurrency` in flight) from an asyncio loop that runs in a
background thread, so `generate()` can be called from any thread, any number of times. Transport
failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff and jitter,
honouring `Retry-After`; other 4xx replies are not. The API key is read from an environment variable,
sent as a Bearer token, and never logged, stored in provenance or put in an error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from vlcli.backends.textgen import GenerationRequest, GenerationResult
from vlcli.errors import ModelLoadError, UsageError
from vlcli.text import one_line

DEFAULT_BASE_URL = "http://localhost:8000/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
MAX_BACKOFF = 60.0  # seconds: the longest wait between two attempts, Retry-After included
ERROR_BODY_CHARS = 200  # how much of a failed reply's body an error message keeps
SCHEMA_WORDS = ("response_format", "json_schema")  # a 400 naming these means "structured output unsupported"
RESERVED_PARAMS = frozenset({"model", "messages", "response_format", "stream"})

log = logging.getLogger(__name__)
T = TypeVar("T")


def public_url(url: str) -> str:
    """`url` without credentials, query or fragment: safe to record in provenance and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address needs its brackets back
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def retry_after_seconds(value: str | None) -> float | None:
    """The delay a `Retry-After` header asks for (seconds or an HTTP date), or None if absent/unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


@dataclass
class _Attempt:
    """What one HTTP attempt gave: a result to return, or a reason to retry (with an optional delay)."""

    result: GenerationResult | None = None
    retry_reason: str | None = None  # e.g. "HTTP 500", "timeout (120s)"
    detail: str = ""  # the start of the failed reply's body, for the error message
    retry_after: float | None = None
    drop_schema: bool = False


class _LoopThread:
    """An asyncio event loop in a daemon thread: coroutines submitted from any thread run on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vlcli-openai-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result in the calling thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class OpenAICompatibleGenerator:
    """A `TextGenerator` over HTTP: POST {base_url}/chat/completions, concurrent, with retries."""

    name = "openai"
    supports_images = True  # messages are sent as given; images are already data URLs

    def __init__(
        self,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        api_key_env: str | None = DEFAULT_API_KEY_ENV,
        concurrency: int = 16,
        max_retries: int = 5,
        timeout: float = 120.0,
        backoff: float = 1.0,
        extra_params: Mapping[str, Any] | None = None,
    ) -> None:
        if not model:
            raise UsageError("the openai generator needs a model name (--model)")
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"--base-url must start with http:// or https://, not {public_url(base_url)!r}")
        if concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, not {concurrency}")
        if max_retries < 0:
            raise UsageError(f"--max-retries must be 0 or more, not {max_retries}")
        if timeout <= 0:
            raise UsageError(f"the request timeout must be positive, not {timeout}")
        if backoff < 0:
            raise UsageError(f"the retry backoff must be 0 or more seconds, not {backoff}")
        reserved = RESERVED_PARAMS & set(extra_params or {})
        if reserved:
            raise UsageError(f"extra request params cannot set {', '.join(sorted(reserved))}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env or None
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self.extra_params = dict(extra_params or {})
        self.schema_supported = True  # set False once the server rejects response_format
        self._key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        self._lock = threading.Lock()
        self._loop: _LoopThread | None = None
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None

    # --- public API -------------------------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Send every request concurrently (at most `concurrency` in flight); results in input order."""
        if not requests:
            return []
        return self._running_loop().run(self._generate_all(requests))

    def probe(self, timeout: float = 10.0) -> None:
        """Fail at once, with what to do, when nothing answers at base_url (instead of every row
        failing after its retries). Any HTTP answer, even 401 or 404, counts as reachable."""
        try:
            headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
            httpx.get(f"{self.base_url}/models", headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise ModelLoadError(
                f"no OpenAI-compatible server answers at {public_url(self.base_url)} "
                f"({type(exc).__name__}): start one (e.g. `vllm serve {self.model}`) or pass --base-url"
            ) from None

    def provenance(self) -> dict[str, Any]:
        """Backend, model, server (without credentials) and request settings; never the key."""
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": public_url(self.base_url),
            "params": self._scrub_params(self.extra_params),
            "structured_output": self.schema_supported,
        }

    def close(self) -> None:
        """Close the connections and stop the background loop (a later `generate` starts a new one)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._client is not None:
            loop.run(self._client.aclose())
        self._client = None
        self._semaphore = None
        loop.stop()

    def __enter__(self) -> OpenAICompatibleGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------------------

    def _running_loop(self) -> _LoopThread:
        with self._lock:
            if self._loop is None:
                self._loop = _LoopThread()
            return self._loop

    def _ensure_client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        # Created on the loop thread, the only thread that touches them.
        if self._client is None or self._semaphore is None:
            headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
            limits = httpx.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            )
            self._client = httpx.AsyncClient(
                headers=headers, timeout=httpx.Timeout(self.timeout), limits=limits, follow_redirects=False
            )
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._client, self._semaphore

    async def _generate_all(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        client, semaphore = self._ensure_client()
        return list(await asyncio.gather(*(self._complete(client, semaphore, r) for r in requests)))

    async def _complete(
        self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore, request: GenerationRequest
    ) -> GenerationResult:
        """One request to its result: retried on transport failures, never raising."""
        attempts = 0
        failures = 0
        while True:
            attempts += 1
            with_schema = request.json_schema is not None and self.schema_supported
            async with semaphore:  # the slot is held only while a request is on the wire
                try:
                    outcome = await self._attempt(client, self._body(request, with_schema), attempts)
                except Exception as exc:  # a bug or an unexpected library error: one bad row, not a crash
                    outcome = _Attempt(result=self._error(f"{type(exc).__name__}: {exc}", attempts))
            if outcome.drop_schema and with_schema:
                if self.schema_supported:
                    log.info("%s rejects response_format; sending requests without it", self._where())
                self.schema_supported = False
                continue  # not a transport failure: resend at once, without spending a retry
            if outcome.result is not None:
                return outcome.result
            failures += 1
            if failures > self.max_retries:
                detail = f": {outcome.detail}" if outcome.detail else ""
                return self._error(f"{outcome.retry_reason} after {attempts} attempts{detail}", attempts)
            delay = self._delay(failures, outcome.retry_after)
            log.debug("retrying in %.2fs (attempt %d failed: %s)", delay, attempts, outcome.retry_reason)
            await asyncio.sleep(delay)

    async def _attempt(self, client: httpx.AsyncClient, body: dict[str, Any], attempts: int) -> _Attempt:
        try:
            response = await client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.TimeoutException:
            return _Attempt(retry_reason=f"timeout ({self.timeout:g}s)")
        except httpx.TransportError as exc:
            return _Attempt(retry_reason=f"connection error ({type(exc).__name__})")
        status = response.status_code
        if status == 200:
            return _Attempt(result=self._parse(response, attempts))
        text = self._scrub(one_line(response.text, ERROR_BODY_CHARS))
        if status == 429 or status >= 500:
            return _Attempt(
                retry_reason=f"HTTP {status}",
                detail=text,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status == 400 and "response_format" in body and any(w in text.lower() for w in SCHEMA_WORDS):
            return _Attempt(drop_schema=True)
        return _Attempt(result=self._error(f"HTTP {status}: {text}" if text else f"HTTP {status}", attempts))

    def _parse(self, response: httpx.Response, attempts: int) -> GenerationResult:
        try:
            payload = response.json()
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return self._error(
                f"unreadable reply: {self._scrub(one_line(response.text, ERROR_BODY_CHARS))}", attempts
            )
        if not isinstance(content, str):
            return self._error("the reply has no text content", attempts)
        raw_usage = payload.get("usage") or {}
        usage = {
            k: int(v) for k, v in raw_usage.items() if k.endswith("_tokens") and isinstance(v, int | float)
        }
        return GenerationResult(text=content, attempts=attempts, usage=usage)

    def _body(self, request: GenerationRequest, with_schema: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        body.update(self.extra_params)
        if with_schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": request.json_schema, "strict": True},
            }
        return body

    def _delay(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_BACKOFF)
        # Jitter keeps the many requests that failed together from all retrying at the same moment.
        step = self.backoff * 2.0 ** (failures - 1)
        return min(step * random.uniform(0.5, 1.0), MAX_BACKOFF)

    def _error(self, reason: str, attempts: int) -> GenerationResult:
        return GenerationResult(error=self._scrub(one_line(reason, 400)), attempts=attempts)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _scrub_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: self._scrub(v) if isinstance(v, str) else v for k, v in params.items()}

    def _where(self) -> str:
        return public_url(self.base_url)
