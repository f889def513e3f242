"""Text-generation backends: openai (real HTTP to the stub server), transformers (tiny model), vllm (fake)."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, ClassVar

import httpx
import pytest

from vlcli.backends import create
from vlcli.backends.openai_backend import OpenAICompatibleGenerator, public_url, retry_after_seconds
from vlcli.backends.protocols import TextGenerator
from vlcli.backends.textgen import GenerationRequest, GenerationResult
from vlcli.errors import UsageError
from vlcli.testing.stub_server import StubServer, schema_instance

QA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "minItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "question": {"type": "string", "minLength": 40},
                    "options": {"type": "array", "items": {"type": "string"}, "minItems": 4, "maxItems": 4},
                    "answer": {"type": "string", "enum": ["A", "B", "C", "D"]},
                    "difficulty": {"type": "integer", "minimum": 4, "maximum": 5},
                },
                "required": ["question", "options", "answer", "difficulty"],
            },
        }
    },
    "required": ["items"],
}


def chat(text: str, schema: dict[str, Any] | None = None, **kw: Any) -> GenerationRequest:
    """A one-message request."""
    return GenerationRequest(messages=[{"role": "user", "content": text}], json_schema=schema, **kw)


def client(server: StubServer, **options: Any) -> OpenAICompatibleGenerator:
    """An openai generator pointed at the stub, with fast retries."""
    options = {"model": "stub-model", "base_url": server.base_url, "backoff": 0.01, "timeout": 5.0} | options
    gen = create("generator", "openai", **options)
    assert isinstance(gen, OpenAICompatibleGenerator)
    return gen


# --- openai backend against the stub server ---------------------------------------------------------


def test_valid_reply_matches_the_schema_and_sends_response_format() -> None:
    with StubServer() as server, client(server) as gen:
        assert isinstance(gen, TextGenerator)
        [result] = gen.generate([chat("Describe the red bus parked by the station", QA_SCHEMA, seed=3)])
        body = server.requests[0]
    assert result.ok and result.attempts == 1
    reply = json.loads(result.text or "")
    assert len(reply["items"]) == 2
    item = reply["items"][0]
    assert len(item["question"]) >= 40 and item["answer"] == "A" and item["difficulty"] == 4
    assert len(item["options"]) == 4 and "bus" in " ".join(item["options"] + [item["question"]])
    assert result.usage["completion_tokens"] > 0
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": QA_SCHEMA, "strict": True},
    }
    assert body["seed"] == 3 and body["model"] == "stub-model" and "temperature" in body


def test_fenced_and_garbage_replies_come_back_as_text() -> None:
    with StubServer(script=["fenced", "garbage"]) as server, client(server, concurrency=1) as gen:
        fenced, garbage = gen.generate([chat("a cat", QA_SCHEMA), chat("a dog", QA_SCHEMA)])
    assert fenced.ok and "```json" in (fenced.text or "")
    assert garbage.ok and garbage.text and "not json" in garbage.text


def test_429_is_retried_and_attempts_are_counted() -> None:
    with StubServer(script=["429", "429"]) as server, client(server) as gen:
        [result] = gen.generate([chat("hello there")])
        assert server.counts["429"] == 2 and len(server.requests) == 3
    assert result.ok and result.attempts == 3


def test_500_is_retried_then_becomes_a_one_line_error() -> None:
    with StubServer(script=lambda body, n: "500") as server, client(server, max_retries=2) as gen:
        [result] = gen.generate([chat("hello there")])
        assert len(server.requests) == 3
    assert not result.ok and result.text is None and result.attempts == 3
    assert result.error is not None and result.error.startswith("HTTP 500 after 3 attempts: ")
    assert "internal server error" in result.error and "\n" not in result.error


def test_a_client_error_is_not_retried() -> None:
    with StubServer(script=["401"]) as server, client(server) as gen:
        [result] = gen.generate([chat("hello")])
        assert len(server.requests) == 1
    assert result.error is not None and result.error.startswith("HTTP 401: ") and result.attempts == 1


def test_a_slow_reply_times_out_and_is_retried() -> None:
    with StubServer(script=["slow"], slow_seconds=1.0) as server, client(server, timeout=0.2) as gen:
        [result] = gen.generate([chat("one")])
        assert server.counts == {"slow": 1, "json": 1}
    assert result.ok and result.attempts == 2


def test_timeouts_exhaust_the_retries() -> None:
    server = StubServer(script=lambda body, n: "slow", slow_seconds=1.0)
    with server, client(server, timeout=0.2, max_retries=1) as gen:
        [result] = gen.generate([chat("one")])
    assert result.error == "timeout (0.2s) after 2 attempts" and result.attempts == 2


def test_a_server_without_structured_output_gets_requests_without_it_from_then_on() -> None:
    with StubServer(script=["400-no-schema"]) as server, client(server) as gen:
        [first] = gen.generate([chat("a bird on a branch", QA_SCHEMA)])
        [second] = gen.generate([chat("a bus at night", QA_SCHEMA)])
        bodies = list(server.requests)
    assert first.ok and second.ok and first.attempts == 2
    assert "response_format" in bodies[0]
    assert "response_format" not in bodies[1] and "response_format" not in bodies[2]
    assert gen.schema_supported is False and gen.provenance()["structured_output"] is False


def test_concurrency_is_capped_and_reached_under_load() -> None:
    with StubServer(latency=0.05, capacity=None) as server, client(server, concurrency=4) as gen:
        results = gen.generate([chat(f"image {i}") for i in range(24)])
        assert server.max_in_flight == 4
    assert all(r.ok for r in results)


def test_a_saturated_server_makes_requests_wait_not_fail() -> None:
    with StubServer(latency=0.05, capacity=2) as server, client(server, concurrency=8) as gen:
        start = time.perf_counter()
        results = gen.generate([chat(f"image {i}") for i in range(8)])
        seconds = time.perf_counter() - start
        assert server.max_in_flight == 2
    assert all(r.ok for r in results) and seconds >= 4 * 0.05


def test_results_keep_input_order_when_replies_finish_out_of_order() -> None:
    def reply(body: dict[str, Any]) -> str:
        text = str(body["messages"][0]["content"])
        time.sleep(0.01 * (7 - int(text.split()[-1]) % 8))  # later requests answer first
        return text

    with StubServer(reply=reply) as server, client(server, concurrency=8) as gen:
        results = gen.generate([chat(f"echo {i}") for i in range(16)])
    assert [r.text for r in results] == [f"echo {i}" for i in range(16)]


def test_the_api_key_is_sent_but_never_logged_stored_or_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-test-Secret-0123456789"
    monkeypatch.setenv("VL_TEST_API_KEY", key)
    caplog.set_level(logging.DEBUG)
    with StubServer(script=["401", "500", "429"]) as server:
        with client(server, api_key_env="VL_TEST_API_KEY", concurrency=1, max_retries=1) as gen:
            results = gen.generate([chat("one"), chat("two"), chat("three")])
            provenance = json.dumps(gen.provenance())
        seen = list(server.authorizations)
    assert seen == [f"Bearer {key}"] * len(seen) and len(seen) == 5
    assert results[0].error is not None and "Incorrect API key provided: ***" in results[0].error
    texts = [r.error or "" for r in results] + [r.text or "" for r in results] + [provenance]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert not [t for t in texts if key in t]
    assert any("retrying" in r.getMessage() for r in caplog.records)  # DEBUG logging was on


def test_no_key_variable_means_no_authorization_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with StubServer() as server, client(server) as gen:
        assert gen.generate([chat("hi")])[0].ok
        assert server.authorizations == [None]


def test_generate_works_twice_from_other_threads_and_after_close() -> None:
    with StubServer(latency=0.02) as server:
        gen = client(server, concurrency=3)
        out: dict[str, list[GenerationResult]] = {}

        def worker(name: str) -> None:
            out[name] = gen.generate([chat(f"{name} {i}") for i in range(5)])

        threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["main"] = gen.generate([chat("main 0")])
        gen.close()
        out["again"] = gen.generate([chat("again 0")])  # a closed generator starts a fresh loop
        gen.close()
        assert server.max_in_flight <= 3  # two threads share one cap
    assert all(r.ok for rs in out.values() for r in rs)
    assert [len(out[k]) for k in ("t0", "t1", "main", "again")] == [5, 5, 1, 1]
    assert gen.generate([]) == []


def test_an_unreachable_server_becomes_an_error() -> None:
    with StubServer() as server:
        url = server.base_url  # the port is closed once the stub stops
    gen = OpenAICompatibleGenerator(model="m", base_url=url, max_retries=1, backoff=0.0, timeout=2.0)
    [result] = gen.generate([chat("hi")])
    gen.close()
    assert result.error == "connection error (ConnectError) after 2 attempts"


def test_provenance_has_no_credentials() -> None:
    gen = OpenAICompatibleGenerator(
        model="m", base_url="https://user:pw@api.example.com/v1/?token=abc", extra_params={"top_p": 0.9}
    )
    assert gen.provenance() == {
        "backend": "openai",
        "model": "m",
        "base_url": "https://api.example.com/v1",
        "params": {"top_p": 0.9},
        "structured_output": True,
    }
    assert public_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"


def test_extra_params_are_sent() -> None:
    with StubServer() as server, client(server, extra_params={"top_p": 0.5}) as gen:
        gen.generate([chat("hi", temperature=0.0, max_tokens=12)])
        body = server.requests[0]
    assert body["top_p"] == 0.5 and body["temperature"] == 0.0 and body["max_tokens"] == 12


@pytest.mark.parametrize(
    "options",
    [
        {"model": ""},
        {"model": "m", "base_url": "localhost:8000"},
        {"model": "m", "concurrency": 0},
        {"model": "m", "max_retries": -1},
        {"model": "m", "extra_params": {"messages": []}},
    ],
)
def test_bad_options_are_usage_errors(options: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        OpenAICompatibleGenerator(**options)


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("0") == 0.0 and retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


# --- the stub server itself -------------------------------------------------------------------------


def test_stub_lists_its_model_and_rejects_unknown_routes() -> None:
    with StubServer(model="tiny") as server:
        models = httpx.get(f"{server.base_url}/models").json()
        missing = httpx.post(f"{server.base_url}/completions", json={})
        bad = httpx.post(f"{server.base_url}/chat/completions", content=b"[1, 2]")
    assert models["data"][0]["id"] == "tiny"
    assert missing.status_code == 404 and bad.status_code == 400


def test_schema_instances_follow_refs_enums_and_bounds() -> None:
    schema = {
        "$defs": {"Item": {"type": "object", "properties": {"kind": {"const": "mcq"}}}},
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 3},
            "short": {"type": "string", "maxLength": 5},
            "score": {"type": "number", "exclusiveMinimum": 0.5},
            "maybe": {"type": ["null", "boolean"]},
            "either": {"anyOf": [{"type": "integer", "maximum": -2}, {"type": "string"}]},
        },
    }
    value = schema_instance(schema, ["alpha", "beta"])
    assert value == {
        "items": [{"kind": "mcq"}] * 3,
        "short": "alpha",
        "score": 1.5,
        "maybe": True,
        "either": -2,
    }
    assert schema_instance(schema, ["alpha", "beta"]) == value  # deterministic


# --- transformers backend with a tiny local chat model -----------------------------------------------


@pytest.fixture(scope="module")
def local_lm(tiny_causal_lm: str) -> Any:
    """The transformers generator over the tiny chat model, on CPU."""
    from vlcli.backends.transformers_generator import TransformersGenerator

    gen = create("generator", "transformers", model=tiny_causal_lm, device="cpu", batch_size=4)
    assert isinstance(gen, TransformersGenerator) and isinstance(gen, TextGenerator)
    yield gen
    gen.close()


def test_transformers_batches_match_single_requests(local_lm: Any) -> None:
    requests = [
        chat("a dog", max_tokens=10, temperature=0.0),
        chat("two cats sleeping on a red couch " * 6, max_tokens=10, temperature=0.0),
        chat("a bus parked next to a tall building at night", max_tokens=10, temperature=0.0),
    ]
    batched = local_lm.generate(requests)
    alone = [local_lm.generate([r])[0] for r in requests]
    assert [r.text for r in batched] == [r.text for r in alone]  # left padding changes nothing
    assert [r.text for r in local_lm.generate(requests)] == [
        r.text for r in batched
    ]  # greedy is deterministic
    assert all(r.ok and r.text for r in batched)
    assert len({r.text for r in batched}) == 3
    prompt_tokens = [r.usage["prompt_tokens"] for r in batched]
    assert prompt_tokens[0] < prompt_tokens[2] < prompt_tokens[1]
    assert all(0 < r.usage["completion_tokens"] <= 10 for r in batched)


def test_transformers_drops_images_and_keeps_order_across_settings(local_lm: Any) -> None:
    from vlcli.backends.textgen import image_part, text_part

    with_image = GenerationRequest(
        messages=[{"role": "user", "content": [text_part("a dog"), image_part(b"\xff\xd8not-a-jpeg")]}],
        max_tokens=6,
        temperature=0.0,
    )
    greedy = chat("a dog", max_tokens=6, temperature=0.0)
    sampled = [chat(f"a cat {i}", max_tokens=6, temperature=1.0, seed=i) for i in range(3)]
    mixed = [sampled[0], with_image, sampled[1], greedy, sampled[2]]
    results = local_lm.generate(mixed)
    assert results[1].text == results[3].text == local_lm.generate([greedy])[0].text
    again = local_lm.generate(mixed)
    assert [r.text for r in again] == [r.text for r in results]  # seeded sampling is reproducible
    assert local_lm.supports_images is False
    assert local_lm.provenance() == {
        "backend": "transformers",
        "model": local_lm.model,
        "revision": None,
        "dtype": "float32",
    }


def test_transformers_failure_is_an_error_result(local_lm: Any) -> None:
    bad, good = local_lm.generate([chat("a dog", max_tokens=-1), chat("a dog", max_tokens=4)])
    assert bad.error is not None and bad.error.startswith("generation failed: ") and "\n" not in bad.error
    assert good.ok


def test_transformers_missing_model_is_a_load_error(tmp_path: Any) -> None:
    from vlcli.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="cannot load the tokenizer of"):
        create("generator", "transformers", model=str(tmp_path / "nothing-here"), device="cpu")


# --- vllm backend, through a fake `vllm` module (vLLM wheels need CUDA) -------------------------------


class FakeSamplingParams:
    """Records its keyword arguments, like vllm.SamplingParams."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class FakeSchemaParams:
    """Stands in for StructuredOutputsParams / GuidedDecodingParams."""

    def __init__(self, json: dict[str, Any]) -> None:
        self.json = json


class FakeLLM:
    """Records the engine options and every chat call; replies echo the last message."""

    instances: ClassVar[list[FakeLLM]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple[list[Any], Any]] = []
        FakeLLM.instances.append(self)

    def chat(self, messages: list[Any], sampling_params: Any, use_tqdm: bool = True) -> list[Any]:
        from types import SimpleNamespace

        self.calls.append((messages, sampling_params))
        if any("FAIL" in str(conversation) for conversation in messages):
            raise ValueError("the prompt is longer than the model's context\nsecond line")
        return [
            SimpleNamespace(
                prompt_token_ids=[1, 2, 3],
                outputs=[SimpleNamespace(text=f"re: {conv[-1]['content']}", token_ids=[7, 8])],
            )
            for conv in messages
        ]


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fake `vllm` package in sys.modules (current API: StructuredOutputsParams)."""
    import sys
    import types

    vllm = types.ModuleType("vllm")
    sampling = types.ModuleType("vllm.sampling_params")
    vllm.LLM = FakeLLM  # type: ignore[attr-defined]
    vllm.SamplingParams = FakeSamplingParams  # type: ignore[attr-defined]
    vllm.__version__ = "0.99.fake"  # type: ignore[attr-defined]
    sampling.StructuredOutputsParams = FakeSchemaParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    # the hub is unreachable in tests and these model names are not cached: record the check instead
    monkeypatch.setattr("vlcli.backends.vllm_backend.before_hf_load", lambda m, r=None: HUB_CHECKS.append(m))
    HUB_CHECKS.clear()
    FakeLLM.instances.clear()
    return sampling


HUB_CHECKS: list[str] = []


def test_vllm_sends_the_whole_batch_in_one_chat_call(fake_vllm: Any) -> None:
    gen = create("generator", "vllm", model="org/model", dtype="bf16", max_model_len=4096)
    assert HUB_CHECKS == ["org/model"]  # the hub is asked once, before vLLM starts loading
    requests = [chat(f"q{i}", QA_SCHEMA if i % 2 else None, seed=i, max_tokens=64) for i in range(5)]
    results = gen.generate(requests)
    [llm] = FakeLLM.instances
    assert llm.kwargs == {
        "model": "org/model",
        "dtype": "bfloat16",
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
        "trust_remote_code": False,
        "seed": 0,
        "max_model_len": 4096,
    }
    [(conversations, params)] = llm.calls
    assert conversations == [r.messages for r in requests]
    assert [p.kwargs["seed"] for p in params] == list(range(5))
    assert all(p.kwargs["max_tokens"] == 64 for p in params)
    schemas = [p.kwargs.get("structured_outputs") for p in params]
    assert [s.json if s else None for s in schemas] == [None, QA_SCHEMA, None, QA_SCHEMA, None]
    assert [r.text for r in results] == [f"re: q{i}" for i in range(5)]
    assert results[0].usage == {"prompt_tokens": 3, "completion_tokens": 2}
    assert (
        gen.provenance()["vllm"] == "0.99.fake"
        and gen.provenance()["structured_output"] == "structured_outputs"
    )
    assert gen.generate([]) == [] and len(llm.calls) == 1
    gen.close()


def test_vllm_a_failing_request_fails_alone(fake_vllm: Any) -> None:
    gen = create("generator", "vllm", model="m")
    results = gen.generate([chat("ok 0"), chat("FAIL"), chat("ok 2")])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == "generation failed: ValueError: the prompt is longer than the model's context"
    assert results[2].text == "re: ok 2"


def test_vllm_older_guided_decoding_api(fake_vllm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(fake_vllm, "StructuredOutputsParams")
    monkeypatch.setattr(fake_vllm, "GuidedDecodingParams", FakeSchemaParams, raising=False)
    gen = create("generator", "vllm", model="m", trust_remote_code=True)
    gen.generate([chat("q", QA_SCHEMA)])
    [(_, [params])] = FakeLLM.instances[0].calls
    assert params.kwargs["guided_decoding"].json == QA_SCHEMA
    assert FakeLLM.instances[0].kwargs["trust_remote_code"] is True


def test_vllm_runs_on_cuda_only(fake_vllm: Any) -> None:
    with pytest.raises(UsageError, match="--backend transformers"):
        create("generator", "vllm", model="m", device="cpu")
    assert create("generator", "vllm", model="m", device="cuda").model == "m"


def test_vllm_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from vlcli.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    with pytest.raises(MissingDependencyError, match=r"vlcli\[vllm\]"):
        create("generator", "vllm", model="m")


def test_probe_fails_fast_with_what_to_do_when_no_server_answers() -> None:
    import socket

    from vlcli.errors import ModelLoadError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    gen = create("generator", "openai", model="m", base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ModelLoadError, match=r"no OpenAI-compatible server answers.*--base-url"):
        gen.probe(timeout=2)
    with StubServer() as server:  # any answer counts, even without a key
        create("generator", "openai", model="m", base_url=server.base_url).probe()
