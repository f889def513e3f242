"""Push an `--hf` export to the Hugging Face Hub. The token comes only from the HF_TOKEN environment
variable; it is never printed, logged or written anywhere."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from vlcli.errors import ExportError, UsageError

TOKEN_VARIABLE = "HF_TOKEN"
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
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
