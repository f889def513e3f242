"""The text-generation capability shared by `vl synth` and `vl validate`: requests, replies, protocol.

A request is an OpenAI-style chat (a list of messages whose content is text, or a list of parts with
images as data URLs) plus an optional JSON schema the reply must match. Every backend (`openai`,
`vllm`, `transformers`) takes the same requests, so a step never knows which one it talks to.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]  # {"role": "system"|"user"|"assistant", "content": str | list[part]}


@dataclass(frozen=True)
class GenerationRequest:
    """One chat to complete. `json_schema` asks for a reply matching it where the backend can."""

    messages: list[Message]
    json_schema: dict[str, Any] | None = None
    max_tokens: int = 1024
    temperature: float = 0.7
    seed: int | None = None


@dataclass(frozen=True)
class GenerationResult:
    """The reply to one request: `text` when the backend answered, else `error` (one line, no secrets)."""

    text: str | None = None
    error: str | None = None
    attempts: int = 1  # transport attempts (retries on 429/5xx/timeouts included)
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens / completion_tokens, if known

    @property
    def ok(self) -> bool:
        """Whether the backend produced text."""
        return self.text is not None and self.error is None


@runtime_checkable
class TextGenerator(Protocol):
    """Completes batches of chats; one result per request, in order; never raises for one bad request."""

    name: str
    model: str
    supports_images: bool

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Complete every request (concurrently or batched as the backend can), in input order."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Backend, model and settings that determine the replies (never a key or a token)."""
        ...

    def close(self) -> None:
        """Release connections, engines and memory."""
        ...


def text_part(text: str) -> dict[str, Any]:
    """A text part of a multimodal message."""
    return {"type": "text", "text": text}


def image_part(data: bytes, mime: str = "image/jpeg") -> dict[str, Any]:
    """An image part of a multimodal message, as an OpenAI-style data URL."""
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}


def message_text(message: Message) -> str:
    """The text of a message, its image parts left out (for backends that cannot see images)."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")


def message_images(message: Message) -> list[bytes]:
    """The decoded bytes of every data-URL image part of a message."""
    content = message.get("content", "")
    if isinstance(content, str):
        return []
    out = []
    for part in content:
        if part.get("type") == "image_url":
            url = part["image_url"]["url"]
            if url.startswith("data:") and ";base64," in url:
                out.append(base64.b64decode(url.split(";base64,", 1)[1]))
    return out
