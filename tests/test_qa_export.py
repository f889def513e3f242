"""Q/A exports: JSONL in DCVLR's shape, LLaVA and ShareGPT files, the per-item `--hf` dataset and
`--push-to-hub`, each read back by its consumer; selection defaults, crop views, file names, safety."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import datasets
import pyarrow as pa
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner, Result

from vlcli.cli import export as export_cli
from vlcli.errors import ExportError, UsageError
from vlcli.exports.export import MARKER, export
from vlcli.exports.records import (
    ImageRow,
    QAOptions,
    answer_text,
    final_answer,
    llava_samples,
    prompt_text,
    selected_items,
    sharegpt_samples,
)
from vlcli.steps.synth.qa import QAItem
from vlcli.table.schema import (
    BIN,
    CAPTION,
    CROP_BOX,
    FILTER_KEEP,
    ID,
    OBJECTS,
    OCR_TEXT,
    SYNTH_QA,
    VALIDATE_RESULTS,
)
from vlcli.table.storage import Table

BOX = pa.list_(pa.int32(), 4)
DCVLR_KEYS = [
    "id",
    "image",
    "path",
    "source",
    "dataset",
    "bin",
    "ocr_text",
    "detected_objects",
    "caption",
    "reasoning_description",
    "qa_index",
    "question",
    "options",
    "answer",
    "reasoning",
    "reasoning_trace",
]


def mcq(n: int) -> dict[str, Any]:
    return QAItem(
        f"Question {n}?", "B", f"Step 1 of {n}. Step 2.", [f"no{n}", f"yes{n}", "maybe", "never"]
    ).to_row()


def open_qa(n: int) -> dict[str, Any]:
    return QAItem(f"Open question {n}?", f"answer {n}", f"because {n}").to_row()


def ok(*valid: bool) -> list[dict[str, Any]]:
    return [{"valid": v, "reasons": [] if v else ["not grounded"]} for v in valid]


@dataclass
class QATable:
    table: Table
    ids: list[str]


@pytest.fixture
def qa_table(make_table: Callable[..., Table]) -> QATable:
    """Six 64x48 rows with bin features, filter verdicts, Q/A and validation:
    r0 kept, cropped to 30x30, 2 valid MCQ; r1 not filtered yet, 1 valid + 1 invalid; r2 rejected by the
    filter, 1 valid; r3 kept, no Q/A; r4 kept, 1 open item not validated yet; r5 kept, 2 invalid."""
    table = make_table(6)
    ids = sorted(table.to_arrow(["id"]).column("id").to_pylist())
    fields = [
        CROP_BOX.field(),
        FILTER_KEEP.field(),
        BIN.field(),
        OCR_TEXT.field(),
        OBJECTS.field(),
        CAPTION.field(),
        SYNTH_QA.field(),
        VALIDATE_RESULTS.field(),
    ]
    table.ensure_columns(fields)
    cat = {"box": [0, 0, 5, 5], "label": "cat", "score": 0.9}
    dog = {"box": [1, 1, 9, 9], "label": "dog", "score": 0.8}
    rows = {
        "crop_box": [[10, 5, 40, 35], None, None, None, None, None],
        "filter_keep": [True, None, False, True, True, True],
        "bin": ["B", "A", "C", "C", "C", "A"],
        "ocr_text": ["", "TOTAL 42", None, None, None, "x"],
        "objects": [[cat, dog], [], None, None, None, []],
        "caption": ["a cat and a dog", "a receipt", None, None, "a tree", None],
        "synth_qa": [[mcq(0), mcq(1)], [mcq(2), mcq(3)], [mcq(4)], None, [open_qa(5)], [mcq(6), mcq(7)]],
        "validate_results": [ok(True, True), ok(True, False), ok(True), None, None, ok(False, False)],
    }
    data = pa.table({"id": ids, **rows}, schema=pa.schema([ID.field(), *fields]))
    table.write_back(data)
    return QATable(Table.open(table.path), ids)


def load_json(path: Path, cache: Path) -> datasets.Dataset:
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))
    assert isinstance(ds, datasets.Dataset)
    return ds


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --- records ---------------------------------------------------------------------------------


def test_prompt_and_answer_formats() -> None:
    item = QAItem.from_row(mcq(1))
    assert prompt_text(item) == "Question 1?\nA. no1\nB. yes1\nC. maybe\nD. never"
    assert final_answer(item) == "B. yes1"
    assert answer_text(item, QAOptions()) == "Step 1 of 1. Step 2.\n\nAnswer: B. yes1"
    assert answer_text(item, QAOptions(think=True)) == "<think>\nStep 1 of 1. Step 2.\n</think>\n\nB. yes1"
    assert answer_text(item, QAOptions(reasoning=False)) == "B. yes1"
    free = QAItem.from_row(open_qa(2))
    assert prompt_text(free) == "Open question 2?" and answer_text(free, QAOptions()).endswith(
        "Answer: answer 2"
    )
    odd = QAItem("Look at <image> here?", "Z", "", ["a", "b"])  # a letter with no option, no reasoning
    assert prompt_text(odd).startswith("Look at  here?") and answer_text(odd, QAOptions()) == "Z"
    with pytest.raises(UsageError, match="--think"):
        QAOptions(reasoning=False, think=True)
    with pytest.raises(UsageError, match="--turns"):
        QAOptions(turns="many")  # type: ignore[arg-type]


def test_selected_items() -> None:
    qa = [mcq(0), None, mcq(2), mcq(3)]
    chosen, left = selected_items(qa, ok(True, True, False), validated=True)
    assert [i for i, _ in chosen] == [0] and left == 2  # item 3 has no verdict: not valid
    chosen, left = selected_items(qa, None, validated=False)
    assert [i for i, _ in chosen] == [0, 2, 3] and left == 0
    assert selected_items(qa, None, validated=True) == ([], 3)


def test_single_and_multi_turn_samples() -> None:
    row = ImageRow("abc", "images/abc.jpg")
    items = [(0, QAItem.from_row(mcq(0))), (2, QAItem.from_row(open_qa(2)))]
    single = list(llava_samples(row, items, QAOptions()))
    assert [s["id"] for s in single] == ["abc-0", "abc-2"]
    assert single[0]["conversations"][0]["value"].startswith("<image>\nQuestion 0?")
    multi = list(llava_samples(row, items, QAOptions(turns="multi")))
    assert len(multi) == 1 and [t["from"] for t in multi[0]["conversations"]] == ["human", "gpt"] * 2
    assert sum(t["value"].count("<image>") for t in multi[0]["conversations"]) == 1
    chat = next(iter(sharegpt_samples(row, items, QAOptions(turns="multi"))))
    assert (
        chat["images"] == ["images/abc.jpg"]
        and [m["role"] for m in chat["messages"]] == ["user", "assistant"] * 2
    )
    assert chat["messages"][0]["content"].startswith("<image>Question 0?")
    assert not list(llava_samples(row, [], QAOptions(turns="multi")))


# --- JSONL -----------------------------------------------------------------------------------


def test_jsonl_without_images_uses_ids(qa_table: QATable, tmp_path: Path) -> None:
    out = tmp_path / "qa.jsonl"
    report = export(qa_table.table, jsonl=out)
    r0, r1 = qa_table.ids[0], qa_table.ids[1]
    assert (report.rows, report.items, report.samples, report.skipped_items) == (2, 3, 3, 3)
    assert report.file_count == 1 and report.bytes_written == out.stat().st_size
    assert "passed `vl validate`" in (report.note or "") and "'json'" in report.load_hint()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(list(line) == DCVLR_KEYS for line in lines)
    first = next(line for line in lines if line["id"] == r0 and line["qa_index"] == 0)
    assert first["image"] == r0 and first["path"] is None and first["bin"] == "B"
    assert first["detected_objects"] == ["cat", "dog"] and first["caption"] == "a cat and a dog"
    assert first["options"] == ["no0", "yes0", "maybe", "never"] and first["answer"] == "B"
    assert first["reasoning"] == first["reasoning_trace"] == "Step 1 of 0. Step 2."
    assert sorted((line["id"], line["qa_index"]) for line in lines) == sorted([(r0, 0), (r0, 1), (r1, 0)])
    ds = load_json(out, tmp_path / "cache")
    assert len(ds) == 3 and ds.column_names == DCVLR_KEYS
    assert sorted(os.listdir(tmp_path)) == ["cache", "qa.jsonl", "t.lance"]  # no temporary file left


def test_jsonl_with_images_points_at_the_written_crops(qa_table: QATable, tmp_path: Path) -> None:
    out = tmp_path / "out" / "qa.jsonl"
    out.parent.mkdir()
    report = export(qa_table.table, jsonl=out, images=tmp_path / "out" / "images")
    assert report.rows == 2 and report.items == 3 and report.cropped == 1 and report.file_count == 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    r0 = qa_table.ids[0]
    assert {line["image"] for line in lines} == {f"images/{i}.jpg" for i in qa_table.ids[:2]}
    assert all(line["path"] == line["image"] for line in lines)
    assert files_under(tmp_path / "out" / "images") == sorted(
        [MARKER, *(f"{i}.jpg" for i in qa_table.ids[:2])]
    )
    assert Image.open(out.parent / f"images/{r0}.jpg").size == (30, 30)  # the crop view
    assert Image.open(out.parent / f"images/{qa_table.ids[1]}.jpg").size == (64, 48)
    whole = export(qa_table.table, jsonl=tmp_path / "w.jsonl", images=tmp_path / "w", view=_no_crop())
    assert whole.cropped == 0 and Image.open(tmp_path / "w" / f"{r0}.jpg").size == (64, 48)
    assert json.loads((tmp_path / "w.jsonl").read_text().splitlines()[0])["image"].startswith("w/")


def _no_crop() -> Any:
    from vlcli.exports.views import ViewOptions

    return ViewOptions(crop=False)


# --- selection -------------------------------------------------------------------------------


def test_selection_defaults_and_overrides(qa_table: QATable, tmp_path: Path) -> None:
    ids = qa_table.ids

    def exported(**kwargs: Any) -> list[tuple[str, int]]:
        out = tmp_path / "sel.jsonl"
        export(qa_table.table, jsonl=out, overwrite=True, **kwargs)
        return sorted((json.loads(x)["id"], json.loads(x)["qa_index"]) for x in out.read_text().splitlines())

    assert exported() == sorted([(ids[0], 0), (ids[0], 1), (ids[1], 0)])
    everything = sorted(
        [(ids[0], 0), (ids[0], 1), (ids[1], 0), (ids[1], 1), (ids[4], 0), (ids[5], 0), (ids[5], 1)]
    )
    assert exported(qa=QAOptions(all_items=True)) == everything  # r2 is still rejected by the filter
    assert exported(where=f"id = '{ids[2]}'") == [(ids[2], 0)]  # --where replaces the filter default
    assert exported(where="bin = 'A'", qa=QAOptions(all_items=True)) == sorted(
        [(ids[1], 0), (ids[1], 1), (ids[5], 0), (ids[5], 1)]
    )


def test_without_validation_every_item_is_taken(make_table: Callable[..., Table], tmp_path: Path) -> None:
    table = make_table(2)
    ids = sorted(table.to_arrow(["id"]).column("id").to_pylist())
    table.ensure_columns([SYNTH_QA.field()])
    table.write_back(pa.table({"id": ids, "synth_qa": [[mcq(0), mcq(1)], [open_qa(2)]]}))
    report = export(Table.open(table.path), jsonl=tmp_path / "a.jsonl")
    assert report.items == 3 and "has not run" in (report.note or "")
    assert len(load_json(tmp_path / "a.jsonl", tmp_path / "cache")) == 3


def test_a_table_without_qa_is_refused(make_table: Callable[..., Table], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="run `vl synth` first"):
        export(make_table(2), jsonl=tmp_path / "a.jsonl")
    assert not (tmp_path / "a.jsonl").exists()


# --- LLaVA and ShareGPT ----------------------------------------------------------------------


def test_llava_file_reads_back(qa_table: QATable, tmp_path: Path) -> None:
    out = tmp_path / "llava.json"
    report = export(qa_table.table, llava=out, images=tmp_path / "images")
    assert report.samples == 3 and report.items == 3
    samples = json.loads(out.read_text())
    assert [list(s) for s in samples] == [["id", "image", "conversations"]] * 3
    for s in samples:
        assert (tmp_path / s["image"]).is_file() and s["image"] == f"images/{s['id'].rsplit('-', 1)[0]}.jpg"
        human, gpt = s["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n") and gpt["from"] == "gpt"
        assert "\n\nAnswer: B. yes" in gpt["value"]
    ds = load_json(out, tmp_path / "cache")
    assert len(ds) == 3 and ds.column_names == ["id", "image", "conversations"]

    multi = tmp_path / "multi.json"
    report = export(
        qa_table.table, llava=multi, images=tmp_path / "m", qa=QAOptions(turns="multi", reasoning=False)
    )
    samples = json.loads(multi.read_text())
    assert report.samples == 2 and report.items == 3 and {s["id"] for s in samples} == set(qa_table.ids[:2])
    two = next(s for s in samples if s["id"] == qa_table.ids[0])["conversations"]
    assert [t["value"] for t in two[1::2]] == ["B. yes0", "B. yes1"]
    assert sum(t["value"].count("<image>") for t in two) == 1


def test_sharegpt_file_reads_back(qa_table: QATable, tmp_path: Path) -> None:
    out = tmp_path / "data" / "vl.json"
    out.parent.mkdir()
    export(qa_table.table, sharegpt=out, images=tmp_path / "data" / "img", qa=QAOptions(think=True))
    samples = json.loads(out.read_text())
    assert len(samples) == 3 and [list(s) for s in samples] == [["messages", "images"]] * 3
    for s in samples:
        assert [m["role"] for m in s["messages"]] == ["user", "assistant"]
        text = "".join(m["content"] for m in s["messages"])
        assert text.count("<image>") == len(s["images"]) == 1  # what LLaMA-Factory checks
        assert s["messages"][1]["content"].startswith("<think>\n")
        assert (
            out.parent / s["images"][0]
        ).is_file()  # relative to the file's folder (LLaMA-Factory's media_dir)
    ds = load_json(out, tmp_path / "cache")
    assert ds.column_names == ["messages", "images"] and len(ds) == 3


def test_file_options_errors(qa_table: QATable, tmp_path: Path) -> None:
    t = qa_table.table
    with pytest.raises(UsageError, match="--llava FILE needs --images DIR"):
        export(t, llava=tmp_path / "a.json")
    with pytest.raises(UsageError, match="one of --jsonl, --llava or --sharegpt"):
        export(t, llava=tmp_path / "a.json", jsonl=tmp_path / "b.jsonl", images=tmp_path / "i")
    with pytest.raises(UsageError, match="inside the --images folder"):
        export(t, sharegpt=tmp_path / "i" / "a.json", images=tmp_path / "i")
    with pytest.raises(UsageError, match="not with --hf"):
        export(t, jsonl=tmp_path / "a.jsonl", hf=tmp_path / "h")
    with pytest.raises(UsageError, match="--columns and --no-image"):
        export(t, jsonl=tmp_path / "a.jsonl", columns=["bin"])
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export(t, jsonl=tmp_path / "afile" / "sub" / "a.jsonl")
    (tmp_path / "a.jsonl").write_text("mine\n")
    with pytest.raises(ExportError, match="exists: pass --overwrite"):
        export(t, jsonl=tmp_path / "a.jsonl")
    assert (tmp_path / "a.jsonl").read_text() == "mine\n" and not (tmp_path / "i").exists()
    assert export(t, jsonl=tmp_path / "a.jsonl", overwrite=True).items == 3
    assert export(t, jsonl=tmp_path / "new" / "deep" / "a.jsonl").items == 3  # its folders are made


# --- the per-item --hf dataset ---------------------------------------------------------------


def test_hf_has_one_row_per_item_with_the_crop_view(qa_table: QATable, tmp_path: Path) -> None:
    report = export(qa_table.table, hf=tmp_path / "hf", columns=["caption"], shard_rows=2)
    assert report.rows == 2 and report.items == 3 and report.cropped == 1
    assert report.columns == [
        "id",
        "image_id",
        "qa_index",
        "image",
        "question",
        "options",
        "answer",
        "reasoning",
        "bin",
        "caption",
    ]
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert isinstance(ds, datasets.Dataset) and len(ds) == 3 and ds.column_names == report.columns
    assert isinstance(ds.features["image"], datasets.Image)
    assert "data-00001-of-00002.arrow" in report.files
    r0 = qa_table.ids[0]
    by_id = {row["id"]: row for row in ds}
    assert set(by_id) == {f"{r0}-0", f"{r0}-1", f"{qa_table.ids[1]}-0"}
    first = by_id[f"{r0}-0"]
    assert first["image"].size == (30, 30) and first["image_id"] == r0 and first["bin"] == "B"
    assert first["options"][1] == "yes0" and first["answer"] == "B" and first["caption"] == "a cat and a dog"
    plain = datasets.load_from_disk(str(tmp_path / "hf")).cast_column("image", datasets.Image(decode=False))
    assert {row["image"]["path"] for row in plain} == {f"{i}.jpg" for i in qa_table.ids[:2]}

    lean = export(qa_table.table, hf=tmp_path / "lean", image=False, qa=QAOptions(all_items=True))
    ds = datasets.load_from_disk(str(tmp_path / "lean"))
    assert lean.items == len(ds) == 7 and "image" not in ds.column_names


def test_parquet_stays_one_row_per_image(qa_table: QATable, tmp_path: Path) -> None:
    report = export(qa_table.table, parquet=tmp_path / "pq", columns=["synth_qa"], image=False)
    assert report.rows == 6 and report.note is None


# --- safety ----------------------------------------------------------------------------------


def test_file_names_come_from_ids_only(make_table: Callable[..., Table], tmp_path: Path) -> None:
    """Sources and datasets that look like paths never become paths; a row whose id is not a safe file
    name gets no image and no record; nothing is written outside the targets."""
    from conftest import jpeg_bytes, table_rows

    table = make_table(2, name="evil.lance")
    rows = table_rows([jpeg_bytes(10), jpeg_bytes(11)], dataset="../../evil").to_pydict()
    rows["source"] = ["../../etc/x.jpg", "/etc/passwd"]
    rows["id"] = [rows["id"][0], "../../escaped"]
    table.append(pa.table(rows, schema=table.schema))
    ids = table.to_arrow(["id"]).column("id").to_pylist()
    table.ensure_columns([SYNTH_QA.field()])
    table.write_back(pa.table({"id": ids, "synth_qa": [[mcq(k)] for k in range(len(ids))]}))
    table = Table.open(table.path)
    before = files_under(tmp_path.parent)
    out = tmp_path / "out"
    out.mkdir()
    report = export(table, llava=out / "a.json", images=out / "img")
    assert report.skipped == {"id is not a safe file name": 1} and report.items == 3 and report.by_dataset
    written = files_under(out)
    safe = [i for i in ids if i != "../../escaped"]
    datasets_folder = {"../../evil": "______evil", "test": "test"}
    assert all(name.startswith(("a.json", "img/")) and ".." not in name for name in written)
    assert sorted(Path(n).name for n in written if n.startswith("img/") and n != f"img/{MARKER}") == sorted(
        f"{i}.jpg" for i in safe
    )
    assert {Path(n).parent.name for n in written if n.endswith(".jpg")} <= set(datasets_folder.values())
    samples = json.loads((out / "a.json").read_text())
    assert all(
        not s["image"].startswith(("/", "..")) and (out / s["image"]).resolve().is_relative_to(out)
        for s in samples
    )
    after = files_under(tmp_path.parent)
    new = sorted(set(after) - set(before))
    prefix = f"{tmp_path.name}/"
    assert all(n.startswith(prefix + "out/") or n.startswith(prefix + "evil.lance/") for n in new), new


# --- push to the Hub -------------------------------------------------------------------------


class FakeHfApi:
    """Records what would be sent to the Hub; keeps a copy of the uploaded folder."""

    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    uploaded: ClassVar[Path | None] = None

    def __init__(self, token: str | None = None, **kwargs: Any) -> None:
        FakeHfApi.calls.append(("init", {"token": token, **kwargs}))

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        FakeHfApi.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, **kwargs: Any) -> None:
        import shutil

        FakeHfApi.calls.append(("upload_folder", kwargs))
        assert FakeHfApi.uploaded is not None
        shutil.copytree(kwargs["folder_path"], FakeHfApi.uploaded)


def test_push_to_hub_needs_a_token(
    qa_table: QATable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ExportError, match="HF_TOKEN environment variable"):
        export(qa_table.table, hf=tmp_path / "hf", push_to_hub="me/data")
    assert not (tmp_path / "hf").exists()  # checked before anything was written
    with pytest.raises(UsageError, match="uploads an --hf export"):
        export(qa_table.table, jsonl=tmp_path / "a.jsonl", push_to_hub="me/data")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    with pytest.raises(UsageError, match="owner/name"):
        export(qa_table.table, hf=tmp_path / "hf", push_to_hub="../x")


def test_push_to_hub_uploads_loadable_parquet(
    qa_table: QATable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    FakeHfApi.calls = []
    FakeHfApi.uploaded = tmp_path / "uploaded"
    report = export(qa_table.table, hf=tmp_path / "hf", push_to_hub="me/vl-data", private=True, shard_rows=2)
    assert report.pushed == "https://huggingface.co/datasets/me/vl-data"
    names = [name for name, _ in FakeHfApi.calls]
    assert names == ["init", "create_repo", "upload_folder"]
    assert FakeHfApi.calls[0][1]["token"] == "hf_secret"
    assert FakeHfApi.calls[1][1] == {
        "repo_id": "me/vl-data",
        "repo_type": "dataset",
        "private": True,
        "exist_ok": True,
    }
    upload = FakeHfApi.calls[2][1]
    assert upload["repo_id"] == "me/vl-data" and upload["repo_type"] == "dataset"
    assert upload["delete_patterns"] == ["data/train-*.parquet"] and "token" not in upload
    assert files_under(FakeHfApi.uploaded) == [
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
    ]
    hub = datasets.load_dataset(str(FakeHfApi.uploaded), split="train", cache_dir=str(tmp_path / "cache"))
    assert (
        isinstance(hub, datasets.Dataset)
        and len(hub) == 3
        and isinstance(hub.features["image"], datasets.Image)
    )
    assert isinstance(hub[0]["image"], Image.Image)
    assert ".vl-export-tmp" not in os.listdir(tmp_path / "hf")  # the staged shards are gone
    assert "hf_secret" not in repr(report)


def test_push_failure_is_one_line_without_the_token(
    qa_table: QATable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    class Offline(FakeHfApi):
        def create_repo(self, repo_id: str, **kwargs: Any) -> str:
            raise OSError("cannot reach hub with hf_secret\nmore detail")

    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    with pytest.raises(ExportError) as caught:
        export(qa_table.table, hf=tmp_path / "hf", push_to_hub="me/data")
    message = str(caught.value)
    assert "hf_secret" not in message and "\n" not in message and "cannot reach hub with ***" in message
    assert datasets.load_from_disk(str(tmp_path / "hf")).num_rows == 3  # the local export is kept


# --- CLI -------------------------------------------------------------------------------------


def run(*args: str) -> Result:
    app = typer.Typer()
    app.command("export")(export_cli.command)
    app.command("noop")(lambda: None)
    return CliRunner().invoke(app, ["export", *args])


def test_cli_llava_multi_turn(qa_table: QATable, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    result = run(
        qa_table.table.path, "--llava", str(out), "--images", str(tmp_path / "img"), "--turns", "multi"
    )
    assert result.exit_code == 0, result.output
    assert "exported 2 rows (3 Q/A items), 1 cropped" in result.output
    assert (
        "3 items left out as not valid" in result.output and f"images in {tmp_path / 'img'}" in result.output
    )
    assert "load_dataset('json'" in result.output
    assert len(json.loads(out.read_text())) == 2


def test_cli_errors(qa_table: QATable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = qa_table.table.path
    result = run(path, "--sharegpt", str(tmp_path / "a.json"))
    assert result.exit_code == 2 and "--sharegpt FILE needs --images DIR" in result.stderr
    result = run(path, "--llava", str(tmp_path / "a.json"), "--images", str(tmp_path / "i"), "--turns", "x")
    assert result.exit_code == 2 and "--turns must be 'single' or 'multi'" in result.stderr
    monkeypatch.delenv("HF_TOKEN", raising=False)
    result = run(path, "--hf", str(tmp_path / "hf"), "--push-to-hub", "me/data")
    assert (
        result.exit_code == 1 and "HF_TOKEN" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    )


def test_image_bytes_match_the_jsonl_images(qa_table: QATable, tmp_path: Path) -> None:
    """The --hf rows and the --jsonl image files hold the same views."""
    export(qa_table.table, hf=tmp_path / "hf")
    export(qa_table.table, jsonl=tmp_path / "a.jsonl", images=tmp_path / "img")
    plain = datasets.load_from_disk(str(tmp_path / "hf")).cast_column("image", datasets.Image(decode=False))
    for row in plain:
        on_disk = (tmp_path / "img" / row["image"]["path"]).read_bytes()
        assert row["image"]["bytes"] == on_disk
        assert Image.open(io.BytesIO(on_disk)).format == "JPEG"
