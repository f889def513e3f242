"""The text-generation capability shared by `vl synth` and `vl validate`: requests, replies, protocol.

A request is an OpenAI-style chat (a list of messages whose content is text, or a list of parts with
images as data URLs) plus an optional JSON schema the reply must match. Every backend (`openai`,
`vllm`, `transformers`) takes the same requests, so a step never knows which one it talks to.
"""

from __future__ import annotations

import base64
from typing import Any

from vlcli.backends.protocols import GenerationRequest, GenerationResult, Message, TextGenerator

__all__ = [
    "GenerationRequest",
    "GenerationResult",
    "Message",
    "TextGenerator",
    "image_part",
    "message_images",
    "message_text",
    "text_part",
]


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
