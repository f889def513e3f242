"""The Hugging Face Hub: push an `--hf` export (the token comes only from the HF_TOKEN environment
variable; it is never printed, logged or written anywhere), and know before loading a model whether it
is local, cached, or needs a hub that may be unreachable."""

from __future__ import annotations

import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlcli.errors import ExportError, ModelLoadError, UsageError

TOKEN_VARIABLE = "HF_TOKEN"
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # what `vl ingest` opens as a hub dataset
# Where the pushed shards go in the repository: `load_dataset(repo)` maps data/train-* to the train split.
PUSHED_SHARDS = "data/train-*.parquet"


def check_repo_id(repo: str) -> str:
    """`repo` if it looks like 'owner/name', else a UsageError naming the flag."""
    if not REPO_ID.fullmatch(repo) or ".." in repo:
        raise UsageError(f"--push-to-hub {repo!r}: give the dataset repository as owner/name")
    return repo


def hub_token() -> str:
    """The token from HF_TOKEN, or an error saying how to provide one."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise ExportError(
            f"--push-to-hub needs a Hugging Face write token in the {TOKEN_VARIABLE} environment variable "
            "(create one at https://huggingface.co/settings/tokens)"
        )
    return token


def push_dataset(folder: Path, stage: Path, repo: str, token: str, *, private: bool = False) -> str:
    """Upload the dataset saved at `folder` to the dataset repository `repo` as Parquet shards under
    data/ (staged in `stage`, removed afterwards), replacing shards an earlier push left; return its URL."""
    import datasets
    from huggingface_hub import HfApi

    shards = len(list(folder.glob("data-*-of-*.arrow"))) or 1
    dataset = datasets.load_from_disk(str(folder))
    assert isinstance(dataset, datasets.Dataset)
    data = stage / "data"
    data.mkdir(parents=True)
    try:
        was_enabled = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            for i in range(shards):
                part = dataset.shard(num_shards=shards, index=i, contiguous=True)
                part.to_parquet(str(data / f"train-{i:05d}-of-{shards:05d}.parquet"))
        finally:
            if was_enabled:
                datasets.enable_progress_bars()
        api = HfApi(token=token)
        try:
            url = api.create_repo(repo, repo_type="dataset", private=private or None, exist_ok=True)
            api.upload_folder(
                repo_id=repo,
                folder_path=str(stage),
                repo_type="dataset",
                commit_message="Upload dataset exported by vl",
                delete_patterns=[PUSHED_SHARDS],
            )
        except Exception as exc:  # any hub or network failure: one line, without the token
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].replace(token, "***")
            raise ExportError(
                f"--push-to-hub {repo}: {first} (the export itself is complete in {str(folder)!r})"
            ) from None
        return str(url)
    finally:
        del dataset
        shutil.rmtree(stage, ignore_errors=True)


# --- models from the hub: where they are, and failing fast when the hub cannot be reached ----------

PROBE_SECONDS = 2.5
DEFAULT_ENDPOINT = "https://huggingface.co"
# A model id as the hub spells it: "name" or "owner/name" (a path to a folder is checked as a path).
MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# open_clip's hub repository for the default CLIP weights, so a plan need not import open_clip
OPEN_CLIP_DEFAULTS = {("ViT-B-32", "openai"): "timm/vit_base_patch32_clip_224.openai/"}
_probed: dict[str, str | None] = {}  # endpoint -> why it cannot be reached (None: it answered)

Source = Literal["hf", "open_clip", "ultralytics", "bundled", "external"]


@dataclass(frozen=True)
class ModelRef:
    """A model a step will load: what for (`label`), which setting names it, and where it comes from."""

    label: str  # as the plan shows it, e.g. "embedder: facebook/dinov2-base"
    setting: str  # the config key that names it, e.g. "crop.model"
    name: str
    source: Source
    revision: str | None = None
    pretrained: str | None = None  # open_clip: the weights tag or file


def endpoint() -> str:
    """The hub's address ($HF_ENDPOINT, as huggingface_hub reads it, else huggingface.co)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline_mode() -> bool:
    """Whether the hub is switched off for this process (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    flags = (os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    constants = sys.modules.get("huggingface_hub.constants")
    return any(f.strip().upper() in {"1", "ON", "YES", "TRUE"} for f in flags) or bool(
        getattr(constants, "HF_HUB_OFFLINE", False)
    )


def unreachable() -> str | None:
    """Why the hub cannot be used now (offline mode, or a short probe failed), or None when it answers.

    Probed once per process and endpoint with a short timeout, so an unreachable hub costs seconds here
    instead of huggingface_hub's retries (20-50 s) for every file of every model.
    """
    if offline_mode():
        return "HF_HUB_OFFLINE is set"
    url = endpoint()
    if url not in _probed:
        _probed[url] = _probe(url)
    return _probed[url]


def _probe(url: str) -> str | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_SECONDS):
            return None
    except urllib.error.HTTPError as exc:
        return None if exc.code < 500 else f"it answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return f"no answer within {PROBE_SECONDS:g} s"
        return str(getattr(reason, "strerror", None) or reason).strip() or type(exc).__name__


def use_cache_only() -> None:
    """Load hub models from the local cache from now on, without asking the hub (which is unreachable)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True


def is_model_id(name: str) -> bool:
    """Whether `name` is a hub model id rather than a path (an existing path is always a path)."""
    return not Path(name).expanduser().exists() and bool(MODEL_ID.fullmatch(name)) and ".." not in name


ULTRALYTICS_CONFIG_SUFFIXES = (".yaml", ".yml")  # Ultralytics builds these by name, random weights


def ultralytics_dir() -> Path:
    """Where vl keeps Ultralytics' settings and downloaded weights (`$XDG_CACHE_HOME/vlcli/ultralytics`)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "vlcli" / "ultralytics"


def cached(repo: str, files: tuple[str, ...] = ("config.json",), revision: str | None = None) -> bool:
    """Whether one of `files` of the hub repository `repo` is in the local cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, f, revision=revision), str) for f in files)


def missing(ref: ModelRef) -> str | None:
    """Why `ref` cannot be loaded without downloading it (None: a local file or folder, cached, or
    nothing to load)."""
    name = ref.name
    if ref.source in ("bundled", "external"):
        return None
    if ref.source == "ultralytics":
        path = Path(name).expanduser()
        if (
            path.exists()
            or path.suffix in ULTRALYTICS_CONFIG_SUFFIXES
            or (ultralytics_dir() / "weights" / name).is_file()
        ):
            return None
        return "not downloaded yet"
    repo, files = _hub_files(ref)
    if repo is None:
        return (
            None if Path(name.removeprefix("local-dir:")).expanduser().exists() else "no such file or folder"
        )
    return None if cached(repo, files, ref.revision) else "not in the local cache"


def _hub_files(ref: ModelRef) -> tuple[str | None, tuple[str, ...]]:
    """The hub repository `ref` downloads from and the files that show it is cached (None: not the hub)."""
    if ref.source == "hf":
        return (ref.name, ("config.json",)) if is_model_id(ref.name) else (None, ())
    if ref.name.startswith("hf-hub:"):
        return ref.name.removeprefix("hf-hub:"), ("open_clip_config.json",)
    if Path(ref.name).expanduser().exists() or ref.name.startswith("local-dir:"):
        return None, ()
    if ref.pretrained is None or Path(ref.pretrained).expanduser().is_file():
        return None, ()
    name = ref.name.replace("/", "-")
    hub = OPEN_CLIP_DEFAULTS.get((name, ref.pretrained), "")
    if not hub:
        try:  # importing open_clip takes seconds (torch, torchvision): only for other weights
            import open_clip
        except ImportError:
            return None, ()
        hub = str((open_clip.get_pretrained_cfg(name, ref.pretrained) or {}).get("hf_hub") or "")
    if not hub:
        return None, ()  # downloaded from a URL outside the hub
    model_id, filename = os.path.split(hub)
    return model_id, ((filename,) if filename else OPEN_CLIP_WEIGHTS)


def before_load(ref: ModelRef) -> None:
    """Call before a backend loads `ref`: when the hub is unreachable, a cached model is then loaded from
    the cache at once, and a model that is not cached fails in seconds saying what to do."""
    repo, files = _hub_files(ref) if ref.source in ("hf", "open_clip") else (None, ())
    if repo is None:
        return
    down = unreachable()
    if down is None:
        return
    if cached(repo, files, ref.revision):
        use_cache_only()
        return
    raise ModelLoadError(no_hub_message(down, [ref]))


def check_available(refs: list[ModelRef]) -> None:
    """Before a run loads anything: the same as `before_load` for every model it will need, at once."""
    hub_refs = [r for r in refs if r.source in ("hf", "open_clip") and _hub_files(r)[0] is not None]
    if not hub_refs:
        return
    absent = [r for r in hub_refs if missing(r)]
    down = unreachable()
    if down is None:
        return
    if absent:
        raise ModelLoadError(no_hub_message(down, absent))
    use_cache_only()


def no_hub_message(why: str, refs: list[ModelRef]) -> str:
    """One line: which models cannot be loaded, why, and the ways out."""
    names = ", ".join(repr(r.name) for r in refs)
    settings = ", ".join(dict.fromkeys(r.setting for r in refs))
    repo = _hub_files(refs[0])[0] or refs[0].name
    where = (
        "offline mode is on (HF_HUB_OFFLINE)"
        if why == "HF_HUB_OFFLINE is set"
        else f"the Hugging Face Hub at {endpoint()} cannot be reached ({why})"
    )
    them = "they are" if len(refs) > 1 else "it is"
    # a step command's flag (--model) has no --preset beside it: name the command that has
    offline = "`vl run --preset offline`" if settings.startswith("--") else "--preset offline"
    return (
        f"cannot load {names}: {where} and {them} not in the local cache; use {offline}, or point "
        f"{settings} at a local folder, or download {'them' if len(refs) > 1 else 'it'} where the hub is "
        f"reachable (`hf download {repo}`, formerly huggingface-cli) and run with HF_HUB_OFFLINE=1"
    )


def before_hf_load(model: str, revision: str | None = None, flag: str = "--model") -> None:
    """`before_load` for a transformers model named by `flag` (a hub id or a local folder)."""
    before_load(ModelRef(f"{flag} {model}", flag, model, "hf", revision))
