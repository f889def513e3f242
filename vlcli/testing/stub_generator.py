"""The `stub` text generator: an in-process stand-in for an LLM, for the offline preset and the demo.

It runs no model. It answers every request with JSON of the requested shape, written from the facts
in the prompt (the words that are not part of `vl`'s own templates: OCR text, object labels, caption),
so that synth, validate, export and the review page all have something to work on without a model hub
or a GPU. Its questions are NOT meaningful: like the tiny random models, it exists to show and test
the pipeline, and the offline preset prints a banner saying so.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from vlcli.backends.null import NAME as NULL
from vlcli.backends.registry import NULL_NOTE as NOTE
from vlcli.backends.textgen import GenerationRequest, GenerationResult, message_text

STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "from",
        "by",
        "is",
        "are",
        "was",
        "were",
        "be",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "there",
        "here",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "why",
        "image",
        "images",
        "picture",
        "photo",
    ]
)
FALLBACK = ("scene", "colour", "shape", "object", "light", "surface")


@functools.lru_cache(maxsize=1)
def _template_words() -> frozenset[str]:
    from vlcli.steps.synth import prompts

    words: set[str] = set()
    for name in prompts.BUILTIN:
        words.update(w.lower() for w in re.findall(r"[A-Za-z]+", prompts.builtin(name).text))
    return frozenset(words)


def evidence_words(request: GenerationRequest) -> list[str]:
    """Distinct words of the prompt that come from the image's facts, not from vl's templates."""
    text = "\n".join(message_text(m) for m in request.messages)
    skip = _template_words() | STOPWORDS
    seen: dict[str, None] = {}
    for word in re.findall(r"[A-Za-z]{3,}", text):
        if word.lower() not in skip:
            seen.setdefault(word.lower(), None)
    return list(seen) or list(FALLBACK)


def _item(words: list[str], k: int, mcq: bool) -> dict[str, Any]:
    w = [words[(k * 3 + i) % len(words)] for i in range(6)]
    answer_text = f"the {w[0]} next to the {w[1]}"
    question = f"Which detail of the image links the {w[0]} with the {w[1]} and the {w[2]}?"
    reasoning = (
        f"1. The image shows the {w[0]} and the {w[1]}. "
        f"2. The {w[2]} appears close to the {w[0]}, which rules out the {w[3]}. "
        f"3. Combining both observations, the answer is {answer_text}."
    )
    item: dict[str, Any] = {"question": question, "reasoning": reasoning}
    if mcq:
        item["options"] = [
            answer_text,
            f"the {w[3]} alone",
            f"the {w[4]} alone",
            f"the {w[5]} and the {w[3]}",
        ]
        item["answer"] = "A"
    else:
        item["answer"] = answer_text
    return item


def _count(schema: dict[str, Any] | None) -> int:
    questions = ((schema or {}).get("properties") or {}).get("questions") or {}
    return max(1, int(questions.get("minItems", 1)))


def _is_mcq(schema: dict[str, Any] | None) -> bool:
    return "options" in json.dumps(schema or {})


def reply(request: GenerationRequest) -> str:
    """The stand-in's reply: {"questions": [...]} for question requests, a description otherwise."""
    words = evidence_words(request)
    schema = request.json_schema
    if schema is not None and "questions" in (schema.get("properties") or {}):
        mcq = _is_mcq(schema)
        return json.dumps({"questions": [_item(words, k, mcq) for k in range(_count(schema))]})
    return "The image shows " + ", ".join(words[:12]) + "."


class StubGenerator:
    """Answers every request at once from the prompt's facts; no model, not meaningful (offline preset)."""

    name = "stub"
    supports_images = True  # images are accepted and ignored

    def __init__(self, model: str = "stub", **options: Any) -> None:
        self.model = model

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """One reply per request, in order."""
        return [GenerationResult(text=reply(r)) for r in requests]

    def provenance(self) -> dict[str, Any]:
        """Names the stand-in, so rows it wrote are recognisable."""
        return {"backend": "stub", "model": self.model, "note": "no model: outputs are not meaningful"}

    def close(self) -> None:
        """Nothing to release."""


class NullGenerator(StubGenerator):
    """The `null` generator: the stub's replies under the null backends' name, for measuring ceilings."""

    name = NULL

    def __init__(self, model: str = NULL, **options: Any) -> None:
        super().__init__(model, **options)

    def provenance(self) -> dict[str, Any]:
        """Names the null backend."""
        return {"backend": NULL, "model": self.model, "note": NOTE}
