"""`vl synth`: questions, answers and reasoning per image from a text generator (any OpenAI-compatible
server, in-process vLLM, or transformers), optionally after a VLM describes the image (`--describe`).

Each batch of rows is one `generate()` call per pass (describe, ask, each retry), so vLLM batches it
and the HTTP backend keeps `--concurrency` requests in flight. Replies are parsed by `vlcli.steps.synth.replies`;
a reply that does not parse is asked again (up to `max_retries`), then recorded as an error with
its raw text kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from vlcli.backends import create
from vlcli.backends.textgen import GenerationRequest, GenerationResult, Message, image_part, text_part
from vlcli.errors import UsageError
from vlcli.images import view_jpeg
from vlcli.steps.base import Progress, RunOptions, Step, StepReport, StepSpec
from vlcli.steps.filter.step import KEPT
from vlcli.steps.runner import run_step
from vlcli.steps.synth import prompts
from vlcli.steps.synth.prompts import Facts, Template
from vlcli.steps.synth.replies import MODES, Mode, ReplyError, parse_items, reply_schema
from vlcli.table.schema import (
    BIN,
    BIN_SELECTED,
    CAPTION,
    CROP_BOX,
    HEIGHT,
    ID,
    IMAGE,
    OBJECTS,
    OCR_TEXT,
    SYNTH_DESCRIPTION,
    SYNTH_MODEL,
    SYNTH_QA,
    SYNTH_RAW,
    WIDTH,
)
from vlcli.table.storage import Table
from vlcli.text import one_line

if TYPE_CHECKING:
    from vlcli.hub import ModelRef

DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct"
DEFAULT_PER_IMAGE = {"mcq": 2, "qa": 1}
# Options each built-in backend takes beyond `model`; a plugin backend gets every one that is set.
BACKEND_OPTIONS = {
    "openai": ("base_url", "api_key_env", "concurrency"),
    "vllm": ("device", "dtype", "trust_remote_code", "seed"),
    "transformers": ("device", "dtype", "trust_remote_code"),
}
ALL_BACKEND_OPTIONS = (
    "base_url",
    "api_key_env",
    "concurrency",
    "device",
    "dtype",
    "trust_remote_code",
    "seed",
)
MAX_ECHO_CHARS = 4000  # how much of an unusable reply is shown back to the model when asking again


def default_batch_size(concurrency: int) -> int:
    """Rows per batch: each batch is one generate() call per pass, and its slowest request holds up the
    next batch, so a batch carries several rounds of `concurrency` requests (and vLLM a full batch)."""
    return max(64, 8 * concurrency)


@dataclass(frozen=True)
class SynthSettings:
    """What is asked, of which model, and how; everything except the key is recorded as provenance."""

    mode: Mode = "mcq"
    per_image: int | None = None  # None: 2 for mcq, 1 for qa
    backend: str = "openai"
    model: str = DEFAULT_MODEL
    base_url: str | None = None  # openai: None is the backend's default (http://localhost:8000/v1)
    api_key_env: str | None = None  # openai: the variable holding the key (None: OPENAI_API_KEY)
    concurrency: int = 16
    temperature: float = 0.7
    max_tokens: int = 2048
    seed: int | None = None
    max_retries: int = 2  # re-asks for a reply that does not parse (transport retries are the backend's)
    describe: bool = False
    describe_model: str | None = None  # None: the same model
    send_image: bool = False
    image_size: int = 1024  # long side of the JPEG sent to the model
    prompt: str | None = None  # a template file replacing the built-in question template(s)
    describe_prompt: str | None = None
    all_rows: bool = False  # every kept row, not only the rows the bin step selected
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    backend_options: dict[str, Any] = field(default_factory=dict)  # more keyword options for the backend

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"--mode must be {' or '.join(MODES)}, not {self.mode!r}")
        if self.per_image is not None and self.per_image < 1:
            raise UsageError("--per-image must be at least 1")
        if not self.model:
            raise UsageError("--model must name a model")
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.temperature < 0:
            raise UsageError("--temperature must be 0 or more")
        if self.max_tokens < 1:
            raise UsageError("--max-tokens must be at least 1")
        if self.max_retries < 0:
            raise UsageError("--max-retries must be 0 or more")
        if self.image_size < 32:
            raise UsageError("--image-size must be at least 32 pixels")
        if self.describe_prompt is not None and not self.describe:
            raise UsageError("--describe-prompt needs --describe")
        if "model" in self.backend_options:
            raise UsageError("--backend-option cannot set model (use --model)")

    @property
    def count(self) -> int:
        """Questions asked per image."""
        return self.per_image or DEFAULT_PER_IMAGE[self.mode]

    def generator_options(self, model: str) -> dict[str, Any]:
        """The options `create("generator", backend, ...)` gets (only those that are set)."""
        names = BACKEND_OPTIONS.get(self.backend, ALL_BACKEND_OPTIONS)
        values = {name: getattr(self, name) for name in names}
        return {"model": model, **{k: v for k, v in values.items() if v is not None}, **self.backend_options}


def question_templates(settings: SynthSettings) -> dict[str, Template]:
    """The question template per bin ("*" when one template serves every row)."""
    if settings.prompt is not None:
        return {"*": prompts.load(settings.prompt, "--prompt")}
    if settings.mode == "mcq":
        return {"*": prompts.builtin("mcq")}
    return {b: prompts.builtin(f"qa_{b}") for b in "ABC"}


@dataclass
class _Row:
    """One prepared row: its facts, its bin, and the JPEG of its view when the model is to see it."""

    facts: Facts
    bin: str | None
    has_description: bool
    image: bytes | None = None
    result: dict[str, Any] = field(default_factory=dict)


class SynthStep(Step):
    """Per row: (describe,) ask, parse, re-ask what did not parse; one generate() per pass per batch."""

    name = "synth"
    reads: ClassVar[tuple[str, ...]] = (ID.name, WIDTH.name, HEIGHT.name)
    optional_reads = tuple(c.name for c in (CROP_BOX, OCR_TEXT, OBJECTS, CAPTION, BIN, SYNTH_DESCRIPTION))
    prerequisites = (KEPT,)
    transient = ("generator", "describer")

    def __init__(self, settings: SynthSettings | None = None, reuse_descriptions: bool = True) -> None:
        self.settings = s = settings or SynthSettings()
        self.reuse_descriptions = reuse_descriptions
        self.templates = question_templates(s)
        self.describe_template: Template | None = None
        if s.describe:
            self.describe_template = (
                prompts.load(s.describe_prompt, "--describe-prompt")
                if s.describe_prompt
                else prompts.builtin("describe")
            )
        self.writes = (SYNTH_QA, SYNTH_RAW, SYNTH_MODEL, *((SYNTH_DESCRIPTION,) if s.describe else ()))
        self.schema = reply_schema(s.mode, s.count)
        self.generator: Any = None
        self.describer: Any = None

    @classmethod
    def ready_filter(cls, columns: Iterable[str] = (), params: Mapping[str, Any] | None = None) -> str | None:
        """Kept rows; without --all (`all_rows` in `params`), only the rows the bin step selected."""
        ready = super().ready_filter(columns, params)
        if (params or {}).get("all_rows"):
            return ready
        selected = "bin IS NOT NULL AND bin_selected = true"
        return f"{ready} AND {selected}" if ready else selected

    def check(self, table: Table) -> None:
        """Fail early, with what to do, when the rows to work on cannot be chosen."""
        names = table.schema.names
        if not self.settings.all_rows and (BIN.name not in names or BIN_SELECTED.name not in names):
            raise UsageError("no bins yet: run `vl bin TABLE` first, or pass --all to use every kept row")

    def setup(self) -> None:
        """Build the generator(s) once; check they can see images where images are to be sent."""
        s = self.settings
        self.generator = self._build(s.model)
        probe = getattr(self.generator, "probe", None)
        if probe is not None:
            probe()  # an unreachable server fails the command, not every row after its retries
        if s.send_image and not self.generator.supports_images:
            raise UsageError(f"--send-image: the {s.backend} backend with {s.model} cannot take images")
        if s.describe:
            if s.describe_model in (None, s.model):
                self.describer = self.generator
            else:
                self.describer = self._build(s.describe_model)
            if not self.describer.supports_images:
                raise UsageError(
                    f"--describe needs a model that sees images; the {s.backend} backend with "
                    f"{self.describer.model} cannot (pick one with --describe-model)"
                )

    def _build(self, model: str) -> Any:
        s = self.settings
        try:
            return create("generator", s.backend, **s.generator_options(model))
        except TypeError as exc:  # an option this backend does not take
            raise UsageError(f"--backend-option: the {s.backend} backend says: {exc}") from None

    def _needs_description(self, row: dict[str, Any]) -> bool:
        return self.settings.describe and not (self.reuse_descriptions and row.get("synth_description"))

    def prepare(self, row: dict[str, Any]) -> _Row:
        """The row's facts, and its view as a bounded JPEG when a model is to see it."""
        describe = self._needs_description(row)
        image = None
        if describe or self.settings.send_image:
            image = view_jpeg(row, self.settings.image_size)
        description = row.get("synth_description") if not describe else None
        facts = prompts.facts({**row, "synth_description": description})
        return _Row(facts=facts, bin=row.get("bin"), has_description=not describe, image=image)

    def process(self, items: list[_Row]) -> list[dict[str, Any]]:
        """Describe (when asked), then ask for the items, re-asking for replies that do not parse."""
        if self.settings.describe:
            self._describe([r for r in items if not r.has_description])
        ask = []
        for row in items:
            if "synth_status" in row.result:
                continue
            if row.facts.empty and row.image is None:
                row.result["synth_status"] = (
                    "skipped: nothing known about the image (run vl bin, or pass --describe or --send-image)"
                )
            else:
                ask.append(row)
        self._ask(ask)
        return [self._output(row) for row in items]

    def _output(self, row: _Row) -> dict[str, Any]:
        out = {"synth_qa": None, "synth_raw": None, "synth_model": None, **row.result}
        if self.settings.describe:
            out["synth_description"] = row.facts.description or None
        return out

    def _describe(self, rows: list[_Row]) -> None:
        assert self.describe_template is not None
        requests = [self._request(self._describe_prompt(r), r.image, None) for r in rows]
        for row, reply in zip(rows, self.describer.generate(requests) if requests else []):
            if reply.ok and reply.text and reply.text.strip():
                row.facts = replace(row.facts, description=reply.text.strip())
            else:
                row.result["synth_status"] = "error: describe: " + one_line(reply.error or "empty reply")

    def _describe_prompt(self, row: _Row) -> str:
        assert self.describe_template is not None
        return self.describe_template.fill(row.facts.values(self.settings.count))

    def question_prompt(self, facts: Facts, bin_name: str | None) -> str:
        """The question prompt for one image (the bin picks the template in qa mode; unbinned rows get C)."""
        template = self.templates.get("*") or self.templates.get(bin_name or "C") or self.templates["C"]
        return template.fill(facts.values(self.settings.count))

    def _request(
        self, prompt: str, image: bytes | None, schema: dict[str, Any] | None, seed_offset: int = 0
    ) -> GenerationRequest:
        content: Any = prompt if image is None else [image_part(image), text_part(prompt)]
        s = self.settings
        return GenerationRequest(
            messages=[{"role": "user", "content": content}],
            json_schema=schema,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            seed=None if s.seed is None else s.seed + seed_offset,
        )

    def _ask(self, rows: list[_Row]) -> None:
        s = self.settings
        first = {
            id(r): self._request(
                self.question_prompt(r.facts, r.bin), r.image if s.send_image else None, self.schema
            )
            for r in rows
        }
        label = f"{self.generator.name}:{self.generator.model}"
        reasons: dict[int, str] = {}
        pending = rows
        for attempt in range(s.max_retries + 1):
            if not pending:
                break
            requests = [
                _again(first[id(r)], r.result.get("synth_raw"), reasons[id(r)], attempt)
                if attempt
                else first[id(r)]
                for r in pending
            ]
            retry = []
            for row, reply in zip(pending, self.generator.generate(requests)):
                row.result["synth_model"] = label
                retry += [row] if self._take(row, reply, reasons) else []
            pending = retry
        for row in pending:
            row.result["synth_status"] = "error: invalid reply: " + one_line(reasons[id(row)])

    def _take(self, row: _Row, reply: GenerationResult, reasons: dict[int, str]) -> bool:
        """Record one reply on its row; True when it did not parse and may be asked again."""
        if not reply.ok:
            row.result["synth_status"] = "error: " + one_line(reply.error or "no reply")
            return False
        row.result["synth_raw"] = reply.text
        try:
            items = parse_items(reply.text, self.settings.mode, self.settings.count)
        except ReplyError as exc:
            reasons[id(row)] = str(exc)
            return True
        row.result["synth_qa"] = [item.to_row() for item in items]
        row.result["synth_status"] = "ok"
        return False

    def provenance(self) -> dict[str, Any]:
        """Backend, model, mode, templates and sampling settings (the key never: only its variable's name)."""
        s = self.settings
        params: dict[str, Any] = {
            k: v for k, v in asdict(s).items() if k not in ("prompt", "describe_prompt", "device")
        }
        params["per_image"] = s.count
        params["templates"] = ", ".join(f"{k}:{t.digest}" for k, t in sorted(self.templates.items()))
        if self.describe_template is not None:
            params["describe_template"] = self.describe_template.digest
        if self.generator is not None:
            params["generator"] = self.generator.provenance()
        if self.describer is not None and self.describer is not self.generator:
            params["describer"] = self.describer.provenance()
        return params


def _again(first: GenerationRequest, raw: str | None, reason: str, attempt: int) -> GenerationRequest:
    """The same question with the unusable reply and why it could not be used, so the model can fix it."""
    follow_up: list[Message] = [
        {"role": "assistant", "content": (raw or "")[:MAX_ECHO_CHARS]},
        {
            "role": "user",
            "content": f"That reply could not be used: {reason}. Answer again with only the JSON object, "
            "in exactly the form asked for.",
        },
    ]
    seed = None if first.seed is None else first.seed + attempt
    return replace(first, messages=[*first.messages, *follow_up], seed=seed)


class _SynthStepWithImages(SynthStep):
    """The same step, reading the image bytes (for --describe and --send-image)."""

    reads: ClassVar[tuple[str, ...]] = (ID.name, IMAGE.name, WIDTH.name, HEIGHT.name)


def synth_step(settings: SynthSettings | None = None, reuse_descriptions: bool = True) -> SynthStep:
    """The step for these settings (it reads image bytes only when a model is to see the images)."""
    s = settings or SynthSettings()
    cls = _SynthStepWithImages if (s.describe or s.send_image) else SynthStep
    return cls(s, reuse_descriptions)


def run_synth(
    table: Table,
    settings: SynthSettings | None = None,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> StepReport:
    """Generate Q/A items for every pending row (resumable: rows done stay done)."""
    s = settings or SynthSettings()
    opts = options or RunOptions(batch_size=default_batch_size(s.concurrency))
    return run_step(table, synth_step(s, reuse_descriptions=not opts.redo), opts, progress)


def models(settings: SynthSettings) -> list[ModelRef]:
    """The text generator(s) `vl synth` uses with these settings."""
    refs = [generator_ref("synth", "generator", settings.backend, settings.model)]
    if settings.describe:
        describer = settings.describe_model or settings.model
        refs.append(generator_ref("synth", "describer", settings.backend, describer))
    return refs


def generator_ref(step: str, role: str, backend: str, model: str) -> ModelRef:
    """A text generator: a hub model for in-process backends, a name on a server for `openai`."""
    from vlcli import hub

    source: hub.Source = "hf" if backend in ("transformers", "vllm") else "external"
    return hub.ModelRef(f"{role}: {backend}:{model}", f"{step}.model", model, source)


SPEC = StepSpec(
    "synth",
    (SynthSettings,),
    synth_step,
    models,
    batch_size=64,
    batch_for=lambda s: default_batch_size(s.concurrency),
    needs="bin",
)


__all__ = [
    "DEFAULT_MODEL",
    "SynthSettings",
    "SynthStep",
    "default_batch_size",
    "question_templates",
    "run_synth",
    "synth_step",
    "view_jpeg",
]
