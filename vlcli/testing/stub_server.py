"""An OpenAI-compatible chat server that answers instantly-made replies: for tests, benchmarks, no-GPU runs.

    python -m vlcli.testing.stub_server --port 8000 --latency 0.2 --capacity 8

It speaks real HTTP on 127.0.0.1: POST /v1/chat/completions and GET /v1/models. `capacity` caps the
requests served at once (extra ones wait, like a saturated GPU server) and each takes `latency` seconds.
What each request gets is a behaviour, scripted as a list (consumed in order, then "json") or a callable
`(request_json, n) -> behaviour`:

- "json": a valid reply; with a `response_format` JSON schema, a deterministic instance of the schema
  built from the prompt's words, else a short text (or whatever `reply(request_json)` returns);
- "fenced": the same reply inside ```json fences, with text around it;
- "garbage": text that is not JSON;
- "429": Too Many Requests with `Retry-After: 0`; "500": a server error;
- "slow": sleeps `slow_seconds` before answering (longer than a client's timeout);
- "400-no-schema": 400 if the request has a `response_format`, else a normal "json" reply;
- "401": Unauthorized, echoing the key it was given (as some hosted APIs do), to test that clients
  keep keys out of their error messages.

The server records the request bodies, the Authorization headers it saw, the most requests in flight at
once and a count per behaviour, so tests can check what a client did.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BEHAVIOURS = ("json", "fenced", "garbage", "429", "500", "slow", "400-no-schema", "401")
FALLBACK_WORDS = ("stub", "reply", "text")
STRING_WORDS = 8  # words in a generated string (more if the schema's minLength needs them)

Script = Iterable[str] | Callable[[dict[str, Any], int], str]
Reply = Callable[[dict[str, Any]], str]


def prompt_words(request: dict[str, Any]) -> list[str]:
    """The alphabetic words of a chat request's text parts, in order (system and user messages alike)."""
    words: list[str] = []
    for message in request.get("messages") or []:
        content = message.get("content", "") if isinstance(message, dict) else ""
        parts = (
            [content]
            if isinstance(content, str)
            else [p.get("text", "") for p in content if isinstance(p, dict)]
        )
        for part in parts:
            words.extend(re.findall(r"[A-Za-z]{2,}", str(part)))
    return words or list(FALLBACK_WORDS)


class _Words:
    """An endless, deterministic stream of the prompt's words, so different fields get different words."""

    def __init__(self, words: list[str]) -> None:
        self._cycle: Iterator[str] = itertools.cycle(words)

    def take(self, n: int) -> list[str]:
        return [next(self._cycle) for _ in range(n)]


def schema_instance(schema: dict[str, Any], words: list[str]) -> Any:
    """A deterministic value matching a JSON schema (pattern constraints aside), strings from `words`."""
    return _instance(schema, schema, _Words(words))


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    for key in ref.removeprefix("#/").split("/"):
        node = node[key]
    return dict(node)


def _instance(schema: dict[str, Any], root: dict[str, Any], words: _Words) -> Any:
    if "$ref" in schema:
        return _instance(_resolve(schema["$ref"], root), root, words)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _instance(schema[key][0], root, words)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _instance(sub, root, words) for name, sub in props.items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        count = min(count, int(schema.get("maxItems", count)))
        return [_instance(schema.get("items") or {}, root, words) for _ in range(count)]
    if kind == "string":
        return _string(schema, words)
    if kind in ("integer", "number"):
        return _number(schema, kind)
    if kind == "boolean":
        return True
    return None


def _string(schema: dict[str, Any], words: _Words) -> str:
    text = " ".join(words.take(STRING_WORDS))
    min_length = int(schema.get("minLength", 0))
    while len(text) < min_length:
        text += " " + " ".join(words.take(STRING_WORDS))
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])].rstrip() or text[: int(schema["maxLength"])]
    return text


def _number(schema: dict[str, Any], kind: str) -> int | float:
    low = schema.get("minimum", schema["exclusiveMinimum"] + 1 if "exclusiveMinimum" in schema else None)
    high = schema.get("maximum", schema["exclusiveMaximum"] - 1 if "exclusiveMaximum" in schema else None)
    value = low if low is not None else 0
    if high is not None:
        value = min(value, high)
    return int(value) if kind == "integer" else float(value)


def request_schema(request: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request's `response_format` asks for, if any."""
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else None
    return None


def valid_reply(request: dict[str, Any]) -> str:
    """The "json" behaviour's content: a schema instance as JSON, or a short text without a schema."""
    words = prompt_words(request)
    schema = request_schema(request)
    if schema is not None:
        return json.dumps(schema_instance(schema, words))
    return "stub reply: " + " ".join(words[:STRING_WORDS])


class StubServer:
    """An OpenAI-compatible server on 127.0.0.1 in a background thread; `with StubServer() as s: s.base_url`."""

    def __init__(
        self,
        port: int = 0,
        latency: float = 0.0,
        capacity: int | None = 8,
        script: Script | None = None,
        reply: Reply | None = None,
        slow_seconds: float = 5.0,
        model: str = "stub-model",
        host: str = "127.0.0.1",
    ) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1 (or None for no cap), not {capacity}")
        self.host = host
        self.latency = latency
        self.capacity = capacity
        self.reply = reply
        self.slow_seconds = slow_seconds
        self.model = model
        self._script_fn = script if callable(script) else None
        self._script: Iterator[str] | None = None if callable(script) else iter(list(script or ()))
        self._slots = threading.BoundedSemaphore(capacity) if capacity else None
        self._lock = threading.Lock()
        self._n = 0
        self._in_flight = 0
        self.max_in_flight = 0
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.counts: Counter[str] = Counter()
        self._httpd = _Server((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (the free port chosen when created with port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client: http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> StubServer:
        """Serve in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="vlcli-stub", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (requests still sleeping are abandoned)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted, then close the socket."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- bookkeeping (called from handler threads) -------------------------------------------------

    def _record(self, body: dict[str, Any], authorization: str | None) -> str:
        with self._lock:
            n = self._n
            self._n += 1
            self.requests.append(body)
            self.authorizations.append(authorization)
            if self._script_fn is not None:
                behaviour = self._script_fn(body, n)
            else:
                behaviour = next(self._script, "json") if self._script is not None else "json"
            if behaviour not in BEHAVIOURS:
                raise ValueError(f"unknown stub behaviour {behaviour!r} (one of {', '.join(BEHAVIOURS)})")
            self.counts[behaviour] += 1
            return behaviour

    def _enter(self) -> None:
        if self._slots is not None:
            self._slots.acquire()
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
        if self._slots is not None:
            self._slots.release()

    def serve(self, body: dict[str, Any], authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        """Status, extra headers and body for one chat request (waits for a free slot, then `latency`)."""
        behaviour = self._record(body, authorization)
        self._enter()
        try:
            time.sleep(self.slow_seconds if behaviour == "slow" else self.latency)
            return self._answer(behaviour, body, authorization)
        finally:
            self._leave()

    def _answer(
        self, behaviour: str, body: dict[str, Any], authorization: str | None
    ) -> tuple[int, dict[str, str], bytes]:
        if behaviour == "401":
            key = (authorization or "").removeprefix("Bearer ")
            return 401, {}, _error_json(f"Incorrect API key provided: {key}", "invalid_api_key")
        if behaviour == "429":
            return 429, {"Retry-After": "0"}, _error_json("rate limited: too many requests", "rate_limit")
        if behaviour == "500":
            return 500, {}, _error_json("internal server error (stub)", "server_error")
        if behaviour == "400-no-schema" and "response_format" in body:
            message = "response_format json_schema is not supported by this server"
            return 400, {}, _error_json(message, "invalid_request_error")
        content = self.reply(body) if self.reply is not None else valid_reply(body)
        if behaviour == "fenced":
            content = f"Sure! Here is the answer:\n```json\n{content}\n```\nLet me know if you need more."
        elif behaviour == "garbage":
            content = "I am sorry, I will not answer in JSON today {{ not json"
        return 200, {}, json.dumps(self._completion(body, content)).encode()

    def _completion(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        prompt_tokens = len(prompt_words(body))
        completion_tokens = len(content.split())
        return {
            "id": f"stub-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def models(self) -> dict[str, Any]:
        """The /v1/models listing: the one stub model."""
        return {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "vlcli-stub"}]}


def _error_json(message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind}}).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # many clients connect at once; the default backlog of 5 drops connections


def _handler_for(stub: StubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections
        disable_nagle_algorithm = True  # else small header/body writes wait ~40 ms on delayed ACKs

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {}, json.dumps(stub.models()).encode())
            else:
                self._send(404, {}, _error_json(f"no route {self.path}", "not_found"))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {}, _error_json(f"no route {self.path}", "not_found"))
                return
            try:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._send(400, {}, _error_json("the body is not a JSON object", "invalid_request_error"))
                return
            self._send(*stub.serve(body, self.headers.get("Authorization")))

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timed out): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests and benchmarks send thousands of requests

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Run the stub server in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m vlcli.testing.stub_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one; default 8000)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request (default 0.2)")
    parser.add_argument("--capacity", type=int, default=8, help="requests served at once (default 8)")
    parser.add_argument("--model", default="stub-model", help="model name /v1/models reports")
    args = parser.parse_args(argv)
    server = StubServer(
        port=args.port, latency=args.latency, capacity=args.capacity, model=args.model, host=args.host
    )
    print(f"stub OpenAI server on {server.base_url} (latency {args.latency}s, capacity {args.capacity})")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
