"""Q/A items as training records: DCVLR's JSONL line, a LLaVA sample and a ShareGPT (LLaMA-Factory) sample.

Pure functions over plain values: which items of a row are exported, how a question and its options are
asked, how the answer (with its reasoning) is written."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vlcli.errors import UsageError
from vlcli.steps.synth.qa import QAItem

Turns = Literal["single", "multi"]
IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class QAOptions:
    """How Q/A items become training samples, and which items are exported."""

    turns: Turns = "single"  # one sample per item, or one multi-turn conversation per image
    reasoning: bool = True  # write the reasoning before the answer (a chain of thought)
    think: bool = False  # wrap that reasoning in <think>...</think>
    all_items: bool = False  # also items that validation rejected

    def __post_init__(self) -> None:
        if self.turns not in ("single", "multi"):
            raise UsageError(f"--turns must be 'single' or 'multi', not {self.turns!r}")
        if self.think and not self.reasoning:
            raise UsageError("--think wraps the reasoning in <think> tags: it cannot go with --no-reasoning")


@dataclass(frozen=True)
class ImageRow:
    """What a record takes from its table row: the id, the exported image file and the row's features."""

    id: str
    image: str | None  # the image file relative to the output file; None when no images are written
    fields: dict[str, Any] = field(default_factory=dict)


def selected_items(
    qa: Sequence[dict[str, Any] | None] | None,
    results: Sequence[dict[str, Any] | None] | None,
    *,
    validated: bool,
) -> tuple[list[tuple[int, QAItem]], int]:
    """The items to export with their index in `synth_qa`, and how many were left out as not valid.
    With `validated`, an item is exported only when `results[index].valid` is true."""
    chosen: list[tuple[int, QAItem]] = []
    left_out = 0
    for index, raw in enumerate(qa or []):
        if raw is None:
            continue
        if validated and not _is_valid(results, index):
            left_out += 1
            continue
        chosen.append((index, QAItem.from_row(raw)))
    return chosen, left_out


def _is_valid(results: Sequence[dict[str, Any] | None] | None, index: int) -> bool:
    if results is None or index >= len(results) or results[index] is None:
        return False
    return results[index].get("valid") is True  # type: ignore[union-attr]


def row_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The features a DCVLR record carries, from a table row (missing columns give None)."""
    objects = row.get("objects")
    return {
        "source": row.get("source"),
        "dataset": row.get("dataset"),
        "bin": row.get("bin"),
        "ocr_text": row.get("ocr_text"),
        "detected_objects": None if objects is None else [o["label"] for o in objects if o is not None],
        "caption": row.get("caption"),
        "reasoning_description": row.get("synth_description"),
    }


def option_letter(index: int) -> str:
    """'A' for the first option, 'B' for the second, ..."""
    return chr(ord("A") + index)


def _clean(text: str) -> str:
    """Text with the image placeholder removed: the frameworks count `<image>` tokens against the images."""
    return text.replace(IMAGE_TOKEN, "").strip()


def prompt_text(item: QAItem) -> str:
    """The question, then one 'A. option' line per option for multiple choice."""
    lines = [_clean(item.question)]
    lines += [f"{option_letter(i)}. {_clean(option)}" for i, option in enumerate(item.options)]
    return "\n".join(lines)


def final_answer(item: QAItem) -> str:
    """'B. Paris' (the letter and its option) for multiple choice, the answer text for open questions."""
    answer = _clean(item.answer)
    letter = answer.upper()
    index = ord(letter) - ord("A") if len(letter) == 1 else -1
    if item.options and 0 <= index < len(item.options):
        return f"{letter}. {_clean(item.options[index])}"
    return answer


def answer_text(item: QAItem, options: QAOptions) -> str:
    """The assistant's reply: the reasoning, then 'Answer: <final answer>' (or the reasoning inside
    <think> tags, then the final answer; or only the final answer)."""
    final = final_answer(item)
    reasoning = _clean(item.reasoning)
    if not options.reasoning or not reasoning:
        return final
    if options.think:
        return f"<think>\n{reasoning}\n</think>\n\n{final}"
    return f"{reasoning}\n\nAnswer: {final}"


def dcvlr_record(row: ImageRow, index: int, item: QAItem) -> dict[str, Any]:
    """One JSONL line in the shape DCVLR writes (`synthetic_qa_dataset.jsonl`): the image, its bin and
    features, then the item; `reasoning_trace` repeats `reasoning` under the name DCVLR's scripts read."""
    return {
        "id": row.id,
        "image": row.image if row.image is not None else row.id,
        "path": row.image,
        **row.fields,
        "qa_index": index,
        "question": item.question,
        "options": list(item.options),
        "answer": item.answer,
        "reasoning": item.reasoning,
        "reasoning_trace": item.reasoning,
    }


def _groups(
    row: ImageRow, items: list[tuple[int, QAItem]], turns: Turns
) -> Iterator[tuple[str, list[QAItem]]]:
    """(sample id, its items): one group per item, or one group of every item for multi-turn."""
    if turns == "multi":
        if items:
            yield row.id, [item for _, item in items]
        return
    for index, item in items:
        yield f"{row.id}-{index}", [item]


def llava_samples(
    row: ImageRow, items: list[tuple[int, QAItem]], options: QAOptions
) -> Iterator[dict[str, Any]]:
    """LLaVA samples: {id, image, conversations: [{from: human|gpt, value}]}, `<image>` opening the first
    human turn."""
    for sample_id, group in _groups(row, items, options.turns):
        turns: list[dict[str, str]] = []
        for n, item in enumerate(group):
            prompt = prompt_text(item)
            turns.append({"from": "human", "value": f"{IMAGE_TOKEN}\n{prompt}" if n == 0 else prompt})
            turns.append({"from": "gpt", "value": answer_text(item, options)})
        yield {"id": sample_id, "image": row.image, "conversations": turns}


def sharegpt_samples(
    row: ImageRow, items: list[tuple[int, QAItem]], options: QAOptions
) -> Iterator[dict[str, Any]]:
    """ShareGPT samples as LLaMA-Factory reads them: {messages: [{role: user|assistant, content}], images},
    one `<image>` token (opening the first user message) for the one image."""
    for _, group in _groups(row, items, options.turns):
        messages: list[dict[str, str]] = []
        for n, item in enumerate(group):
            prompt = prompt_text(item)
            messages.append({"role": "user", "content": f"{IMAGE_TOKEN}{prompt}" if n == 0 else prompt})
            messages.append({"role": "assistant", "content": answer_text(item, options)})
        yield {"messages": messages, "images": [row.image]}
