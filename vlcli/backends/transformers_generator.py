"""The `transformers` text generator: a local causal LM, batched; the CPU fallback and the test backend.

Chats go through the tokenizer's chat template (text only: image parts are dropped), are left-padded
into batches of requests that share their sampling settings, and only the new tokens are decoded.
Temperature 0 is greedy decoding; otherwise sampling seeded from the requests' seeds. A JSON schema is
not enforced here: the caller parses the reply and retries.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vlcli.backends.base import require, resolve_device, resolve_dtype
from vlcli.backends.hf import Checkpoint
from vlcli.backends.textgen import GenerationRequest, GenerationResult, Message, message_text
from vlcli.errors import UsageError

if TYPE_CHECKING:
    import torch

DEFAULT_BATCH_SIZE = 8  # chats per generate call: bounds memory (padding grows with the longest prompt)


def _load(
    model: str, revision: str | None, trust_remote_code: bool, device: str, dtype: torch.dtype
) -> tuple[Any, Any]:
    checkpoint = Checkpoint(model, revision, trust_remote_code)
    tokenizer = checkpoint.load("AutoTokenizer", "the tokenizer of")
    net = checkpoint.load("AutoModelForCausalLM", "the language model", dtype=dtype)
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    if tokenizer.pad_token is None:  # Llama-style tokenizers have none; eos is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, net.to(device).eval()


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """A chat as "role: text" lines ending with "assistant:", for tokenizers without a chat template."""
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"])


def _batches(requests: list[GenerationRequest], size: int) -> Iterator[list[int]]:
    """Indices of requests, grouped by sampling settings (one generate call each), in chunks of `size`."""
    groups: dict[tuple[float, int], list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault((request.temperature, request.max_tokens), []).append(i)
    for indices in groups.values():
        for start in range(0, len(indices), size):
            yield indices[start : start + size]


class TransformersGenerator:
    """A Hugging Face causal LM (`AutoModelForCausalLM`) as a `TextGenerator`; text only."""

    name = "transformers"
    supports_images = False

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        trust_remote_code: bool = False,
    ) -> None:
        require("torch")
        if not model:
            raise UsageError("the transformers generator needs a model name or folder (--model)")
        if batch_size < 1:
            raise UsageError(f"the generator's batch size must be at least 1, not {batch_size}")
        self.model = model
        self.revision = revision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self._tokenizer, self._net = _load(model, revision, trust_remote_code, self.device, self.dtype)
        self._commit = getattr(self._net.config, "_commit_hash", None)
        self._lock = threading.Lock()  # generate seeds torch's global RNG: one batch at a time

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Complete every request, batched by sampling settings; results in input order."""
        results: list[GenerationResult] = [GenerationResult(error="not generated")] * len(requests)
        for indices in _batches(requests, self.batch_size):
            replies = self._generate_safely([requests[i] for i in indices])
            for i, reply in zip(indices, replies):
                results[i] = reply
        return results

    def _generate_safely(self, batch: list[GenerationRequest]) -> list[GenerationResult]:
        """One batch; if it fails, each request alone, so one bad request fails only itself."""
        try:
            with self._lock:
                return self._generate_batch(batch)
        except Exception as exc:  # e.g. out of memory, or a prompt longer than the model takes
            if len(batch) > 1:
                return [self._generate_safely([request])[0] for request in batch]
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            return [GenerationResult(error=f"generation failed: {type(exc).__name__}: {first}")]

    def _prompt(self, messages: list[Message]) -> str:
        chat = [{"role": str(m.get("role", "user")), "content": message_text(m)} for m in messages]
        if getattr(self._tokenizer, "chat_template", None):
            return str(self._tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
        return plain_prompt(chat)

    def _generate_batch(self, batch: list[GenerationRequest]) -> list[GenerationResult]:
        torch = require("torch")
        prompts = [self._prompt(r.messages) for r in batch]
        # the chat template already holds the special tokens; adding them again would double the BOS
        inputs = self._tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(self.device)
        first = batch[0]
        config = copy.deepcopy(self._net.generation_config)
        config.max_new_tokens = first.max_tokens
        config.pad_token_id = self._tokenizer.pad_token_id
        if first.temperature > 0:
            config.do_sample, config.temperature = True, first.temperature
            seeds = [r.seed for r in batch if r.seed is not None]
            if seeds:  # reproducible for the same batch of seeded requests
                torch.manual_seed(hash(tuple(seeds)) % 2**63)
        else:
            config.do_sample = False
            config.temperature = config.top_p = config.top_k = None  # unused by greedy decoding
        with torch.inference_mode():
            out = self._net.generate(**inputs, generation_config=config)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = out[:, prompt_len:]
        texts = self._tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
        return [
            GenerationResult(
                text=str(text).strip(),
                usage={"prompt_tokens": int(p), "completion_tokens": self._count_new(row)},
            )
            for text, p, row in zip(texts, prompt_counts, new_tokens)
        ]

    def _count_new(self, row: torch.Tensor) -> int:
        """Generated tokens up to and including the first end-of-sequence (the rest is padding)."""
        ids = row.tolist()
        stops = {self._tokenizer.eos_token_id, self._tokenizer.pad_token_id}
        for n, token in enumerate(ids):
            if token in stops:
                return n + 1 if token == self._tokenizer.eos_token_id else n
        return len(ids)

    def provenance(self) -> dict[str, Any]:
        """Backend, model, revision and dtype (sampling settings travel with each request)."""
        return {
            "backend": self.name,
            "model": self.model,
            "revision": self.revision or self._commit,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def close(self) -> None:
        """Drop the model (and free GPU memory)."""
        self._net = None
        if self.device.startswith("cuda"):
            require("torch").cuda.empty_cache()
