"""The `vllm` text generator: vLLM's offline engine in this process (GPU only; `pip install 'vlcli[vllm]'`).

Every request of a batch goes to the engine in one `LLM.chat` call, so vLLM schedules them together
(continuous batching); each request keeps its own sampling settings and, when it has one, its JSON
schema through guided decoding (`StructuredOutputsParams`; `GuidedDecodingParams` on vLLM < 0.11).
"""

from __future__ import annotations

import gc
from typing import Any

from vlcli.backends.base import require
from vlcli.backends.textgen import GenerationRequest, GenerationResult
from vlcli.errors import ModelLoadError, UsageError
from vlcli.hub import before_hf_load
from vlcli.text import first_line, one_line

VLLM_DTYPES = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def structured_output_field() -> tuple[str, Any]:
    """The SamplingParams keyword and class that carry a JSON schema in the installed vLLM."""
    sampling = require("vllm.sampling_params")
    if hasattr(sampling, "StructuredOutputsParams"):  # vLLM >= 0.11
        return "structured_outputs", sampling.StructuredOutputsParams
    if hasattr(sampling, "GuidedDecodingParams"):  # vLLM 0.6 - 0.10
        return "guided_decoding", sampling.GuidedDecodingParams
    return "", None


class VllmGenerator:
    """vLLM's `LLM` engine as a `TextGenerator`: one `chat` call per batch, JSON schemas enforced."""

    name = "vllm"
    supports_images = True  # vLLM's chat takes image_url parts (data URLs) for vision-language models

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        trust_remote_code: bool = False,
        seed: int = 0,
    ) -> None:
        if not model:
            raise UsageError("the vllm generator needs a model name or folder (--model)")
        if device not in ("auto", "cuda"):
            # vLLM places the model itself (tensor_parallel_size GPUs); pick GPUs with CUDA_VISIBLE_DEVICES
            raise UsageError(
                f"the vllm backend runs on CUDA GPUs (--device auto or cuda), not {device!r}; "
                "use --backend transformers on CPU, or CUDA_VISIBLE_DEVICES to choose GPUs"
            )
        if dtype not in VLLM_DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(VLLM_DTYPES)}, not {dtype!r}")
        if tensor_parallel_size < 1:
            raise UsageError(f"tensor_parallel_size must be at least 1, not {tensor_parallel_size}")
        if not 0 < gpu_memory_utilization <= 1:
            raise UsageError(f"gpu_memory_utilization must be in (0, 1], not {gpu_memory_utilization}")
        vllm = require("vllm")
        self.model = model
        self.revision = revision
        self.dtype = dtype
        self.tensor_parallel_size = tensor_parallel_size
        self.max_model_len = max_model_len
        self.seed = seed
        self.vllm_version = str(getattr(vllm, "__version__", "unknown"))
        self._sampling_params = vllm.SamplingParams
        self._schema_field, self._schema_class = structured_output_field()
        kwargs: dict[str, Any] = {
            "model": model,
            "dtype": VLLM_DTYPES[dtype],
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "trust_remote_code": trust_remote_code,
            "seed": seed,
        }
        if revision:
            kwargs["revision"] = revision
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        before_hf_load(model, revision)
        try:
            self._llm: Any = vllm.LLM(**kwargs)
        except Exception as exc:
            raise ModelLoadError.wrap("the vLLM engine for", model, exc) from exc

    def _params(self, request: GenerationRequest) -> Any:
        kwargs: dict[str, Any] = {
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
        }
        if request.json_schema is not None and self._schema_class is not None:
            kwargs[self._schema_field] = self._schema_class(json=request.json_schema)
        return self._sampling_params(**kwargs)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """All requests in one `LLM.chat` call; if the batch fails, each alone so a bad one fails alone."""
        if not requests:
            return []
        try:
            return self._chat(requests)
        except Exception as exc:
            if len(requests) == 1:
                return [
                    GenerationResult(
                        error=f"generation failed: {type(exc).__name__}: {one_line(first_line(exc), 200)}"
                    )
                ]
            return [self.generate([request])[0] for request in requests]

    def _chat(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        params = [self._params(r) for r in requests]
        outputs = self._llm.chat([r.messages for r in requests], params, use_tqdm=False)
        if len(outputs) != len(requests):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} chats")
        return [self._result(output) for output in outputs]

    @staticmethod
    def _result(output: Any) -> GenerationResult:
        completion = output.outputs[0]
        usage = {
            "prompt_tokens": len(output.prompt_token_ids or []),
            "completion_tokens": len(completion.token_ids or []),
        }
        return GenerationResult(text=str(completion.text), usage=usage)

    def provenance(self) -> dict[str, Any]:
        """Backend, model, revision, dtype, engine seed and vLLM version."""
        return {
            "backend": self.name,
            "model": self.model,
            "revision": self.revision,
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "seed": self.seed,
            "structured_output": self._schema_field or None,
            "vllm": self.vllm_version,
        }

    def close(self) -> None:
        """Drop the engine and free its GPU memory."""
        self._llm = None
        gc.collect()
        torch = require("torch")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
