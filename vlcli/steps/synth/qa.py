"""The Q/A columns `vl synth` writes and `vl validate` judges, shared by export and the review page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
