"""What every command shares: error translation, progress bars, step options."""

from __future__ import annotations

import errno
import functools
import inspect
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TextIO, TypeVar

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vlcli.cli.render import err_console, render
from vlcli.errors import Notice, StepInterrupted, UsageError, VlError
from vlcli.steps.base import RunOptions, StepReport
from vlcli.steps.runner import scale_options

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=str)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handles_errors(func: F) -> F:
    """Translate domain exceptions into one line on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return func(*args, **kwargs)
        except StepInterrupted as exc:
            if isinstance(exc.report, StepReport):
                render(exc.report)
            err_console.print(f"[yellow]interrupted:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: nothing was left half-written; rerun to resume")
            raise typer.Exit(130) from None
        except VlError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except OSError as exc:  # an output the command writes (a folder, a file) failed at the OS level
            raise fail(describe_os_error(exc)) from None

    return wrapper  # type: ignore[return-value]


_python_showwarning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A vl Notice as one `note:` line; any other warning as Python shows it."""
    if issubclass(category, Notice):
        err_console.print(f"[yellow]note:[/] {message}", highlight=False, soft_wrap=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
_RUST_LOCATION = re.compile(r",?\s*\S+\.rs:\d+:\d+")


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: which path, what is wrong with it, what to do (no Rust source paths)."""
    if exc.filename is None:
        lines = str(exc).strip().splitlines()
        return _RUST_LOCATION.sub("", lines[0]) if lines else type(exc).__name__
    path, reason = str(exc.filename), exc.strerror or type(exc).__name__
    if exc.errno in _NOT_WRITABLE:
        return f"{path!r} is not writable ({reason}); make it writable, or choose another path"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device writing {path!r}; free some space and rerun"
    return f"{reason}: {path!r}"


class RichProgress:
    """A rich progress bar implementing the runner's Progress protocol: rows, rows/s, ETA, errors."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._errors = 0

    def start(self, step: str, total: int | None) -> None:
        """Open the bar (an unknown total shows a pulsing bar)."""
        self._errors = 0
        if not self.enabled or total == 0:
            return
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]} rows/s"),
            TextColumn("[red]{task.fields[errors]} errors"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console,
        )
        self._bar.start()
        self._task = self._bar.add_task(step, total=total, errors=0, speed="-")

    def advance(self, rows: int, errors: int) -> None:
        """Move the bar."""
        self._errors += errors
        if self._bar is None or self._task is None:
            return
        task = self._bar.tasks[0]
        elapsed = task.elapsed or 0.0
        speed = f"{(task.completed + rows) / elapsed:,.1f}" if elapsed > 0 else "-"
        self._bar.update(self._task, advance=rows, errors=self._errors, speed=speed)

    def finish(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.stop()
        self._bar = None
        self._task = None


CommitSeconds = Annotated[
    float,
    typer.Option(
        "--commit-seconds",
        min=0,
        help="Commit finished rows this often (0: after every batch); a crash loses at most this.",
    ),
]
TABLE_HELP = "The vl table: a .lance folder or a Lance URI (s3://, gs://, az://, file://)."
TableArg = Annotated[str, typer.Argument(help=TABLE_HELP)]
Limit = Annotated[int | None, typer.Option("--limit", min=0, help="Process at most N pending rows.")]
RetryErrors = Annotated[bool, typer.Option("--retry-errors", help="Also redo rows whose status is an error.")]
Redo = Annotated[
    bool, typer.Option("--redo", help="Recompute every row (after changing settings); resumable.")
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers", min=1, help="Prefetch workers that decode and prepare rows (--engine ray: model actors)."
    ),
]
ShardFlag = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        help="Take only shard K of N (whole fragments) and skip the once-only work, to split a step "
        "across machines by hand; afterwards run once without --shard.",
    ),
]
Procs = Annotated[
    int,
    typer.Option("--procs", min=1, help="Run the rows in N worker processes, one shard each (CPU or GPU)."),
]
Gpus = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        metavar="all|0,1,...",
        help="One worker process per GPU (its CUDA_VISIBLE_DEVICES); all: every GPU this machine shows.",
    ),
]
Engine = Annotated[
    Literal["local", "ray"],
    typer.Option("--engine", help="local: this machine; ray: a Ray cluster (pip install 'vlcli[ray]')."),
]
Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="--engine ray: the cluster (auto: the running one, or HOST:PORT; default: a local one).",
    ),
]
GpusPerWorker = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-worker", min=0, help="--engine ray: GPUs per model actor (default: 1 with GPUs, else 0)."
    ),
]
Pool = Annotated[
    Literal["thread", "process"], typer.Option("--pool", help="Prefetch pool kind: thread or process.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Device = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
Dtype = Annotated[str, typer.Option(help="auto (bf16/fp16 on GPU, fp32 on CPU), fp32, bf16 or fp16.")]
TrustRemoteCode = Annotated[
    bool,
    typer.Option("--trust-remote-code", help="Allow a checkpoint's own Python code to run (off: safer)."),
]


BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", help="openai: the server's /v1 URL (default: http://localhost:8000/v1)."),
]
ApiKeyEnv = Annotated[
    str | None,
    typer.Option(
        "--api-key-env", help="openai: environment variable holding the API key (default: OPENAI_API_KEY)."
    ),
]
ImageSize = Annotated[
    int, typer.Option("--image-size", min=32, help="Long side (pixels) of the images sent to a model.")
]


def choice(value: str, choices: tuple[C, ...], flag: str) -> C:
    """`value` as one of `choices` (a Literal's values), else a one-line error naming the flag."""
    for option in choices:
        if option == value:
            return option
    raise UsageError(f"{flag} must be {' or '.join(choices)}, not {value!r}")


@dataclass(frozen=True)
class StepFlags:
    """The runner and model flags every step command takes, declared once (see `step_flags`)."""

    batch_size: int | None
    limit: int | None
    retry_errors: bool
    redo: bool
    workers: int
    pool: Literal["thread", "process"]
    commit_seconds: float
    quiet: bool
    device: str
    dtype: str
    trust_remote_code: bool
    shard: str | None = None
    procs: int = 1
    gpus: str | None = None
    engine: Literal["local", "ray"] = "local"
    address: str | None = None
    gpus_per_worker: float | None = None

    def options(self, default_batch: int) -> RunOptions:
        """The runner options (`default_batch` when --batch-size was not given)."""
        return RunOptions(
            batch_size=self.batch_size or default_batch,
            limit=self.limit,
            retry_errors=self.retry_errors,
            workers=self.workers,
            pool=self.pool,
            redo=self.redo,
            commit_seconds=self.commit_seconds,
            **scale_options(
                self.shard, self.procs, self.gpus, self.engine, self.address, self.gpus_per_worker
            ),
        )

    def progress(self) -> RichProgress:
        """The progress bar (none with --quiet)."""
        return RichProgress(enabled=False if self.quiet else None)


def step_flags(
    batch_size: int | None, batch_help: str = "Rows per model call or prefetch task."
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a step command the model and runner flags, after its own, as one `flags: StepFlags` argument."""
    batch: Any = Annotated[int, typer.Option("--batch-size", min=1, help=batch_help)]
    if batch_size is None:
        batch = Annotated[int | None, typer.Option("--batch-size", min=1, help=batch_help)]
    added = (
        ("device", Device, "auto"),
        ("dtype", Dtype, "auto"),
        ("trust_remote_code", TrustRemoteCode, False),
        ("batch_size", batch, batch_size),
        ("limit", Limit, None),
        ("retry_errors", RetryErrors, False),
        ("redo", Redo, False),
        ("workers", Workers, 2),
        ("pool", Pool, "thread"),
        ("commit_seconds", CommitSeconds, 10.0),
        ("shard", ShardFlag, None),
        ("procs", Procs, 1),
        ("gpus", Gpus, None),
        ("engine", Engine, "local"),
        ("address", Address, None),
        ("gpus_per_worker", GpusPerWorker, None),
        ("quiet", Quiet, False),
    )

    def attach(func: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "flags"]
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params = [*own, *(inspect.Parameter(n, kind, annotation=a, default=d) for n, a, d in added)]

        @functools.wraps(func)
        def command(**values: Any) -> None:
            flags = StepFlags(**{name: values.pop(name) for name, _, _ in added})
            func(**values, flags=flags)

        # typer reads the options from the signature and the annotations
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return command

    return attach
