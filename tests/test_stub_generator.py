"""The `stub` generator (offline preset, demo): replies of the requested shape from the prompt's facts."""

from __future__ import annotations

from vlcli.backends import create
from vlcli.backends.textgen import GenerationRequest
from vlcli.steps.synth.prompts import builtin
from vlcli.steps.synth.replies import parse_items, reply_schema
from vlcli.steps.validate.rules import ImageContext, ValidationRules, check_item


def request(mode: str, count: int, facts: str) -> GenerationRequest:
    template = builtin("mcq" if mode == "mcq" else "qa_A")
    prompt = template.fill({k: facts if k == "evidence" else str(count) for k in ("evidence", "count")})
    schema = reply_schema(mode, count)  # type: ignore[arg-type]
    return GenerationRequest(messages=[{"role": "user", "content": prompt}], json_schema=schema)


def test_replies_parse_in_both_modes_and_use_only_the_facts() -> None:
    gen = create("generator", "stub", model="stub")
    facts = "Text read in the image: Quarterly revenue 42\nObjects: 3 bicycle (left), 1 lamppost"
    mcq, qa = gen.generate([request("mcq", 2, facts), request("qa", 1, facts)])
    items = parse_items(mcq.text, "mcq", 2)
    assert len(items) == 2 and all(len(i.options) == 4 and i.answer == "A" for i in items)
    (open_item,) = parse_items(qa.text, "qa", 1)
    words = set((items[0].question + open_item.reasoning).lower().replace("?", " ").replace(".", " ").split())
    assert {"quarterly", "revenue", "bicycle"} & words
    assert not {"multiple", "choice", "questions", "json"} & words  # template words stay out
    assert gen.provenance()["note"].startswith("no model")


def test_its_items_can_pass_validation() -> None:
    gen = create("generator", "stub")
    (result,) = gen.generate([request("mcq", 1, "Caption: a red bicycle leaning on a lamppost")])
    (item,) = parse_items(result.text, "mcq", 1)
    context = ImageContext.from_features(None, [], "a red bicycle leaning on a lamppost")
    assert check_item(item, context, ValidationRules()) == []
