"""The Q/A columns `vl synth` writes and `vl validate` judges, shared by export and the review page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from vlcli.schema import Column

QA_ITEM_TYPE = pa.struct(
    [
        pa.field("question", pa.string()),
        pa.field("options", pa.list_(pa.string())),  # empty for open questions (--mode qa)
        pa.field("answer", pa.string()),  # the letter (A-D) for MCQ, the answer text otherwise
        pa.field("reasoning", pa.string()),
    ]
)
VALIDATION_TYPE = pa.struct([pa.field("valid", pa.bool_()), pa.field("reasons", pa.list_(pa.string()))])

SYNTH_QA = Column("synth_qa", pa.list_(QA_ITEM_TYPE), "generated items: question, options, answer, reasoning")
SYNTH_RAW = Column("synth_raw", pa.string(), "the model's raw reply (kept to re-parse or debug)")
SYNTH_MODEL = Column("synth_model", pa.string(), "backend and model that wrote the items")
SYNTH_DESCRIPTION = Column(
    "synth_description", pa.string(), "structured description of the image from a VLM (--describe)"
)
VALIDATE_RESULTS = Column(
    "validate_results", pa.list_(VALIDATION_TYPE), "per item of synth_qa, in order: valid and why not"
)
VALID_COUNT = Column("valid_count", pa.int32(), "number of items of synth_qa that passed validation")


@dataclass(frozen=True)
class QAItem:
    """One generated question with its answer and reasoning (options only for multiple choice)."""

    question: str
    answer: str
    reasoning: str
    options: list[str] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        """The item as a `synth_qa` list element."""
        return {
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "reasoning": self.reasoning,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> QAItem:
        """An item read back from `synth_qa` (missing fields become empty)."""
        return cls(
            question=row.get("question") or "",
            answer=row.get("answer") or "",
            reasoning=row.get("reasoning") or "",
            options=list(row.get("options") or []),
        )


LETTERS = "ABCD"
