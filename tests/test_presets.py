"""Presets read the steps' specs: the models a preset loads come from each step's `models`."""

from __future__ import annotations

from vlcli.run import config
from vlcli.run.presets import HELP, models
from vlcli.steps import BUILT_IN


def test_preset_models_are_what_the_step_specs_report() -> None:
    default, fast = models("default"), models("fast")
    assert list(default) == list(BUILT_IN) and list(fast) == list(BUILT_IN)
    assert [r.name for r in default["crop"]] == [config.defaults("crop")["model"]]
    assert [r.name for r in fast["crop"]] == ["facebook/dinov2-small"]
    assert [r.name for r in fast["synth"]] == ["Qwen/Qwen2.5-0.5B-Instruct"]
    assert "yolo11n.pt" in [r.name for r in fast["bin"]]


def test_preset_help_names_the_models_the_specs_report() -> None:
    for name in ("default", "fast"):
        refs = models(name)
        for setting in ("crop.model", "bin.detector", "bin.clip", "synth.model"):
            step = setting.partition(".")[0]
            chosen = [r.name for r in refs[step] if r.setting == setting]
            assert chosen and chosen[0] in HELP, (name, setting, HELP)
