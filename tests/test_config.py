"""vl.yaml: precedence (default < preset < file < flags), unknown keys, DCVLR mapping, `vl config init`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.errors import UsageError
from vlcli.run import config
from vlcli.run.dcvlr import translate
from vlcli.run.pipeline import build, resolve, step_names

runner = CliRunner()


def test_unknown_key_names_the_nearest_valid_one(tmp_path: Path) -> None:
    path = tmp_path / "vl.yaml"
    path.write_text("crop:\n  num_crop: 5\n")
    with pytest.raises(UsageError, match=r"unknown key crop.num_crop \(did you mean 'num_crops'\?\)"):
        config.load(path)
    path.write_text("cropping:\n  num_crops: 5\n")
    with pytest.raises(UsageError, match=r"unknown section 'cropping' \(did you mean 'crop'\?\)"):
        config.load(path)


def test_bad_yaml_and_missing_file_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "vl.yaml"
    path.write_text("crop: [unclosed\n")
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2 and "not valid YAML" in result.output
    result = runner.invoke(app, ["config", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "vl config init" in result.output


def test_flag_beats_file_beats_preset_beats_default(tiny_dinov2: str) -> None:
    file_settings = {"crop": {"num_crops": 7, "model": tiny_dinov2}, "run": {"preset": "fast"}}
    flags = config.merge(config.parse_assignment("crop.num_crops=9"))
    settings = resolve(file_settings, flags)
    assert settings["crop"]["num_crops"] == 9  # flag
    assert settings["crop"]["model"] == tiny_dinov2  # file over the fast preset's dinov2-small
    assert settings["bin"]["detector"] == "yolo11n.pt"  # the preset's, the file is silent
    assert "resize_to" not in settings["crop"]  # the default, left to the step
    step = build("crop", settings)
    assert step.settings.num_crops == 9 and step.settings.resize_to == 1024  # type: ignore[attr-defined]
    assert "crop" not in resolve({"run": {"preset": "fast"}}, {"run": {"preset": "default"}})


def test_set_parses_values_as_yaml_and_checks_the_key() -> None:
    assert config.parse_assignment("bin.ratios=[0.5, 0.3, 0.2]") == {"bin": {"ratios": [0.5, 0.3, 0.2]}}
    assert config.parse_assignment("filter.max_side=null") == {"filter": {"max_side": None}}
    with pytest.raises(UsageError, match=r"SECTION\.KEY=VALUE"):
        config.parse_assignment("num_crops=3")
    with pytest.raises(UsageError, match="did you mean 'min_side'"):
        config.parse_assignment("filter.minside=3")


def test_bad_value_fails_before_anything_runs() -> None:
    settings = resolve({"crop": {"num_crops": 0}}, None)
    with pytest.raises(UsageError, match="--num-crops"):  # checked before the model is looked up
        build("crop", settings)
    with pytest.raises(UsageError, match="unknown step 'cropp'"):
        step_names({"run": {"steps": ["filter", "cropp"]}})
    assert step_names({"run": {"steps": ["bin", "filter"]}}) == ["filter", "bin"]  # pipeline order


def test_dcvlr_config_keys_map_and_the_rest_are_listed(tmp_path: Path) -> None:
    dcvlr = {
        "filtering": {"min_resolution": 300, "nsfw_threshold": 0.4, "watermark_threshold": 0.5},
        "binning": {
            "text_boxes_threshold": 3,
            "object_count_threshold": 6,
            "captioner_backend": "blip2",
            "object_detector": "yolo",
            "yolo_model": "yolov8n",
            "moondream_api_key": None,
        },
        "synthesis": {
            "llm_model": "tiiuae/falcon-7b-instruct",
            "temperature": 0.3,
            "use_full_features": False,
        },
        "output": {"save_intermediate": True},
        "bins_ratio": [0.5, 0.3, 0.2],
    }
    settings, ignored = translate(dcvlr)
    assert settings["filter"] == {"min_side": 300, "nsfw_threshold": 0.4}
    assert settings["bin"] == {
        "text_boxes": 3,
        "objects": 6,
        "captioner": "Salesforce/blip2-opt-2.7b",
        "detector": "yolov8n.pt",
        "features": "caption-only",
        "ratios": (0.5, 0.3, 0.2),
    }
    assert settings["synth"] == {"model": "tiiuae/falcon-7b-instruct", "temperature": 0.3}
    assert set(ignored) == {
        "filtering.watermark_threshold",
        "binning.object_detector",
        "binning.moondream_api_key",
        "output.save_intermediate",
    }
    path = tmp_path / "default_config.yaml"
    path.write_text(yaml.safe_dump(dcvlr))
    loaded, listed = config.load(path)
    assert loaded["bin"]["detector"] == "yolov8n.pt" and sorted(listed) == sorted(ignored)


def test_config_init_writes_every_default_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "vl.yaml"
    result = runner.invoke(app, ["config", "init", str(path)])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "# Candidates per image." in text and "num_crops: 15" in text
    loaded, _ = config.load(path)
    for section in ("filter", "crop", "bin", "synth"):
        # every default round-trips into the step's settings
        assert config.step_objects(section, loaded[section]) == config.step_objects(section, {})
    assert runner.invoke(app, ["config", "init", str(path)]).exit_code == 2  # no silent overwrite


def test_every_step_setting_is_also_a_flag() -> None:
    """The config keys of a step are its command's flags (a few internal knobs excepted)."""
    from vlcli.cli.reference import commands as every_command

    commands = every_command()  # the group loads a command's module only when asked for it by name
    internal = {"backend", "decode_side", "backend_options", "prefetch", "commit_rows", "commit_seconds"}
    for name, spec in config.sections().items():
        if name not in commands:
            continue
        flags = {p.name for p in commands[name].params}
        missing = [k for k in spec.valid_keys() if spec.aliases.get(k, k) not in flags and k not in internal]
        assert not missing, f"vl {name} has no flag for config keys {missing}"


def test_config_reference_is_current() -> None:
    from vlcli.cli.config import config_reference

    docs = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    assert docs.read_text() == config_reference(), "run: python -m vlcli.cli.config > docs/config.md"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("crop:\n  num_crops: lots\n", r"vl\.yaml:2: crop\.num_crops: 'lots' is not a valid integer"),
        (
            "filter:\n  nsfw: nudenet\n  min_side: -5\n",
            r"vl\.yaml:3: filter\.min_side: --min-side must be >= 0",
        ),
        (
            "filter:\n  nsfw: banana\n",
            r"vl\.yaml:2: filter\.nsfw: unknown nsfw backend 'banana' \(available: ",
        ),
        ("bin:\n  ratios: [0.5, 0.5]\n", r"vl\.yaml:2: bin\.ratios: expected a list of 3 values, got 2"),
        ("synth:\n  describe: maybe\n", r"vl\.yaml:2: synth\.describe: 'maybe' is not true or false"),
        ("crop:\n  aspects: 4-3\n", r"vl\.yaml:2: crop\.aspects: --aspect: expected ratios like"),
        ("run:\n  sample: 0\n", r"vl\.yaml:2: run\.sample: --sample must be at least 1"),
        ("ingest:\n  max_pixels: 0\n", r"vl\.yaml:2: ingest\.max_pixels: --max-pixels must be at least 1"),
    ],
)
def test_config_check_refuses_bad_values_naming_key_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "vl.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        config.load(path)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_set_refuses_a_value_of_the_wrong_type_before_any_comparison() -> None:
    with pytest.raises(UsageError, match=r"--set: crop\.num_crops: 'lots' is not a valid integer"):
        config.parse_assignment("crop.num_crops=lots")
    with pytest.raises(UsageError, match=r"--set: filter\.nsfw_threshold: 'high' is not a valid number"):
        config.parse_assignment("filter.nsfw_threshold=high")
    assert config.parse_assignment("filter.nsfw_threshold=1") == {"filter": {"nsfw_threshold": 1}}


def test_config_check_without_a_path_checks_vl_yaml_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 2 and "vl.yaml: no such file" in result.output, result.output
    (tmp_path / "vl.yaml").write_text("crop:\n  num_crops: 4\n")
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 0 and "num_crops: 4" in result.output, result.output


def test_preset_help_names_the_models_of_each_preset() -> None:
    from vlcli.run.presets import HELP, preset

    fast = preset("fast")
    defaults = {s: config.defaults(s) for s in ("crop", "bin", "synth")}
    names = [defaults["crop"]["model"], defaults["bin"]["detector"], defaults["synth"]["model"]]
    names += [fast["crop"]["model"], fast["bin"]["detector"], fast["synth"]["model"]]
    assert all(name in HELP for name in names), HELP
    result = runner.invoke(app, ["run", "--help"])
    assert "seeds' models" not in result.output and "facebook/dinov2-small" in result.output


def test_readme_keeps_its_two_commands_and_documents_a_cpu_only_install() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b.split("```")[0].strip() for b in readme.split("```bash\n")[1:]]
    assert blocks[:2] == [
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/vl demo",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest",
    ]
    cpu = next(b for b in blocks[2:] if "download.pytorch.org/whl/cpu" in b)
    assert cpu.index("pip install torch torchvision --index-url") < cpu.index("pip install -e .")


def test_ingest_safety_switches_are_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "vl.yaml"
    path.write_text("ingest:\n  allow_external_paths: true\n")
    settings, _ = config.load(path)
    assert config.ingest_options(settings["ingest"]).allow_external_paths is True
    path.write_text("ingest:\n  allow_external_paths: maybe\n")
    with pytest.raises(UsageError, match=r"vl\.yaml:2: ingest\.allow_external_paths"):
        config.load(path)
