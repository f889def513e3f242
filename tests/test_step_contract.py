"""The step contract: check before any work, close however a run ends, transient state never pickled,
one spec per step that builds it from its settings alone."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from vlcli.errors import UsageError
from vlcli.steps import BUILT_IN, Step, Summary, spec, step_class
from vlcli.steps.filter.step import FilterRules, ScoreSettings
from vlcli.steps.runner import run_step
from vlcli.steps.synth.step import SynthSettings, synth_step
from vlcli.steps.validate.step import make_step
from vlcli.table.schema import Column
from vlcli.table.storage import Table


class Model:
    """Stands for a loaded model: remembers whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class ModelStep(Step):
    """Loads a `Model` in setup; optionally refuses the table, or fails in its global part."""

    name = "modelled"
    writes = (Column("modelled_value", pa.int64(), "a constant"),)
    transient = ("model", "extra")

    def __init__(self, refuse: bool = False, fail_finish: bool = False) -> None:
        self.refuse, self.fail_finish = refuse, fail_finish
        self.model: Model | None = None
        self.extra: dict[str, Model] = {}
        self.loaded: list[Model] = []

    def check(self, table: Table) -> None:
        if self.refuse:
            raise UsageError("no such column: run `vl other TABLE` first")

    def setup(self) -> None:
        self.model = Model()
        self.extra = {"same": self.model}
        self.loaded.append(self.model)

    def process(self, items: list[Any]) -> list[dict[str, Any]]:
        assert self.model is not None
        return [{"modelled_value": 1} for _ in items]

    def finish(self, table: Table) -> Summary | None:
        if self.fail_finish:
            raise RuntimeError("global part failed")
        return None


def test_check_fails_before_models_load_and_writes_nothing(make_table: Callable[..., Table]) -> None:
    table = make_table(3)
    step = ModelStep(refuse=True)
    with pytest.raises(UsageError, match="run `vl other TABLE` first"):
        run_step(table, step)
    assert step.loaded == [] and "modelled_status" not in table.schema.names


def test_models_are_closed_and_dropped_when_the_step_ends(make_table: Callable[..., Table]) -> None:
    table = make_table(3)
    step = ModelStep()
    assert run_step(table, step).done == 3
    assert [m.closed for m in step.loaded] == [True]
    assert step.model is None and step.extra == {}


def test_models_are_closed_when_the_step_fails(make_table: Callable[..., Table]) -> None:
    step = ModelStep(fail_finish=True)
    with pytest.raises(RuntimeError, match="global part failed"):
        run_step(make_table(2), step)
    assert step.loaded[0].closed and step.model is None


def test_transient_attributes_never_travel_in_a_pickle() -> None:
    step = ModelStep()
    step.setup()
    copy = pickle.loads(pickle.dumps(step))
    assert copy.model is None and copy.extra == {} and copy.refuse is False
    assert step.model is not None and not step.model.closed  # the original keeps its model


def test_no_built_in_step_defines_its_own_getstate() -> None:
    for name in BUILT_IN:
        cls = step_class(name)
        assert cls.__getstate__ is Step.__getstate__, name
        assert cls.transient, f"{name} declares no transient attributes"


def test_synth_checks_for_bins_in_the_runner(make_table: Callable[..., Table]) -> None:
    step = synth_step(SynthSettings(backend="stub", model="stub"))
    with pytest.raises(UsageError, match="no bins yet"):
        run_step(make_table(2), step)
    assert step.generator is None


def test_validate_checks_for_qa_in_the_runner(make_table: Callable[..., Table]) -> None:
    with pytest.raises(UsageError, match="run `vl synth TABLE` before"):
        run_step(make_table(2), make_step())


def test_a_step_built_from_its_settings_runs_in_another_process(
    make_table: Callable[..., Table], tmp_path: Path
) -> None:
    table = make_table(4)
    step = spec("filter").build(ScoreSettings(nsfw="none"), FilterRules(min_side=1))
    payload = tmp_path / "step.pickle"
    payload.write_bytes(pickle.dumps(step))
    code = (
        "import pickle, sys\n"
        "from vlcli.steps.runner import run_step\n"
        "from vlcli.table.storage import Table\n"
        "step = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "report = run_step(Table.open(sys.argv[2]), step)\n"
        "print(report.done, report.summary.kept)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(payload), table.path], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", "4"]
    assert Table.open(table.path).count("phash IS NOT NULL") == 4


def test_spec_builds_the_step_its_command_runs() -> None:
    crop = spec("crop")
    assert crop.batch_size == 8 and crop.aliases["keep_embedding"] == "embedding"
    synth = spec("synth")
    assert synth.default_batch(SynthSettings(concurrency=32)) == 256 and synth.needs == "bin"
    assert [m.label for m in spec("filter").models(ScoreSettings(nsfw="none"), FilterRules())] == []


def test_vl_run_frees_a_steps_models_before_the_next_step(
    make_table: Callable[..., Table], tiny_dinov2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlcli.run import pipeline

    table = make_table(3)
    built: dict[str, Step] = {}
    real_build = pipeline.build

    def keep(name: str, settings: Any) -> Step:
        built[name] = real_build(name, settings)
        return built[name]

    monkeypatch.setattr(pipeline, "build", keep)
    held_at_start: dict[str, object] = {}

    def listen(kind: str, payload: Any) -> None:
        if kind == "step-start" and payload == "synth":
            held_at_start["crop"] = getattr(built["crop"], "embedder", "missing")

    settings = pipeline.resolve(
        {
            "run": {"steps": ["crop", "synth"]},
            "crop": {"model": tiny_dinov2, "resize_to": 32, "min_side": 8},
            "synth": {"backend": "stub", "model": "stub", "all_rows": True},
        },
        None,
    )
    report = pipeline.run_pipeline(table.path, settings, listener=listen)
    assert [r.step for r in report.steps] == ["crop", "synth"] and report.steps[0].done == 3
    assert held_at_start == {"crop": None}
