"""The backend registry, the capability protocols, the Hugging Face loader, install hints and `vl backends`."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import tomllib
from PIL import Image
from typer.testing import CliRunner

from vlcli.backends import available, create
from vlcli.backends.base import INSTALL, install_hint, require
from vlcli.backends.hf import Checkpoint, in_batches
from vlcli.backends.protocols import PROTOCOLS
from vlcli.backends.registry import BUILTIN
from vlcli.backends.registry import create as typed_create
from vlcli.cli.app import app
from vlcli.errors import MissingDependencyError, ModelLoadError

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-")


# Published packages that only a CUDA machine installs, so this CPU machine cannot show they exist.
GPU_ONLY = {"onnxruntime-gpu"}


def _names_an_existing_install(target: str) -> bool:
    """An extra of vlcli that pyproject.toml declares, or a package installed here (so it exists)."""
    target = target.strip("'\"")
    if target == ".":  # this project, from a checkout
        return True
    if target in GPU_ONLY:
        return True
    extra = re.fullmatch(r"(?:vlcli|\.)\[(\w+)\]", target)
    if extra:
        return extra.group(1) in EXTRAS
    try:
        importlib.metadata.distribution(_requirement_name(target))
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_create_is_typed_per_capability() -> None:
    """mypy sees `create("embedder", ...)` as an Embedder: one overload per capability, returning its protocol."""
    returns = {}
    for overload in typing.get_overloads(typed_create):
        hints = typing.get_type_hints(overload)
        (capability,) = typing.get_args(hints["capability"])
        returns[capability] = hints["return"]
    assert returns == PROTOCOLS
    assert set(PROTOCOLS) == {"embedder", "nsfw", "ocr", "detector", "captioner", "clip", "generator"}


def test_builtins_are_named_classes_that_implement_their_protocol() -> None:
    for backend in BUILTIN:
        assert isinstance(backend.target, str) and ":" in backend.target, backend
        if backend.missing():
            continue  # e.g. vllm on a machine without CUDA wheels
        cls = backend.load()
        protocol = PROTOCOLS[backend.capability]  # type: ignore[index]
        methods = [m for m in vars(protocol) if not m.startswith("_") and callable(getattr(protocol, m))]
        assert methods and all(callable(getattr(cls, m, None)) for m in methods), (backend.name, methods)


def test_choosing_a_backend_imports_no_backend_module() -> None:
    code = (
        "import sys; from vlcli.backends import available\n"
        "names = [available(c) for c in ('embedder', 'nsfw', 'ocr', 'detector', 'captioner', 'clip', 'generator')]\n"
        "print(sorted(m for m in sys.modules if m.startswith('vlcli.backends.') or m in ('torch', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["vlcli.backends.base", "vlcli.backends.protocols", "vlcli.backends.registry"]


def _imports(path: Path) -> set[str]:
    """Modules `path` imports anywhere in it, including `importlib.import_module("...")` literals."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
    return found


def test_the_backends_package_has_no_import_cycle() -> None:
    package = ROOT / "vlcli" / "backends"
    modules = {f"vlcli.backends.{p.stem}": p for p in package.glob("*.py") if p.stem != "__init__"}
    graph = {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert [name for name in graph if reaches(name, name, set())] == []


def test_every_install_hint_names_an_existing_extra_or_package() -> None:
    """The hints once said `pip install 'vlcli[models]'`, an extra that does not exist."""
    assert all(_names_an_existing_install(target) for target in INSTALL.values()), INSTALL
    hints = []
    for path in [*(ROOT / "vlcli").rglob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]:
        for match in re.finditer(
            r"pip install ((?:'[^']+'|[\w.\-\[\]>=]+)(?: (?:'[^']+'|[\w.\-\[\]>=]+))*)", path.read_text()
        ):
            words = match.group(1).split()
            # options and their values (`-e .`, `--index-url URL`) are not packages
            hints += [
                (path.name, w)
                for i, w in enumerate(words)
                if not w.startswith("-") and not words[i - 1].startswith("--")
            ]
    assert hints and [h for h in hints if not _names_an_existing_install(h[1])] == []
    for path in (ROOT / "vlcli").rglob("*.py"):  # a second argument to require() is what to pip install
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "require"
                and len(node.args) > 1
            ):
                assert _names_an_existing_install(ast.literal_eval(node.args[1])), (path, ast.dump(node))


def test_a_missing_module_names_what_to_install() -> None:
    with pytest.raises(MissingDependencyError, match=r"pip install 'vlcli\[vllm\]'"):
        require("vllm.no_such_submodule_here")
    with pytest.raises(MissingDependencyError, match=r"pip install torch\b"):
        require("torch.no_such_submodule_here")
    assert install_hint("paddleocr", "paddle") == "pip install 'vlcli[paddleocr]'"


def test_every_hf_backend_loads_through_the_one_loader() -> None:
    """dinov2, the captioner, the hf NSFW classifier and the transformers generator share `Checkpoint`."""
    for module in ("dinov2", "captioner", "hf_classifier", "transformers_generator"):
        source = (ROOT / "vlcli" / "backends" / f"{module}.py").read_text()
        assert "Checkpoint(" in source and "from_pretrained" not in source, module


def test_the_loader_wraps_a_failure_in_one_line(tmp_path: Path) -> None:
    checkpoint = Checkpoint(str(tmp_path))
    with pytest.raises(
        ModelLoadError, match=r"^cannot load the image processor of '.*': .*\(check the name"
    ) as err:
        checkpoint.load("AutoImageProcessor", "the image processor of")
    assert "\n" not in str(err.value)


def test_in_batches_keeps_order_and_bounds_each_call() -> None:
    sizes: list[int] = []

    def double(chunk: list[int]) -> list[int]:
        sizes.append(len(chunk))
        return [2 * x for x in chunk]

    assert in_batches(double, list(range(7)), 3) == [0, 2, 4, 6, 8, 10, 12]
    assert sizes == [3, 3, 1]
    assert in_batches(double, [], 3) == []


def test_vl_backends_lists_every_capability_and_what_is_missing() -> None:
    result = CliRunner().invoke(app, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    caps = {c["capability"]: c for c in info["capabilities"]}
    assert list(caps) == list(PROTOCOLS)
    assert caps["clip"]["protocol"] == "ImageTextScorer"
    rows = {(cap, b["name"]): b for cap, c in caps.items() for b in c["backends"]}
    builtin = {key for key, row in rows.items() if row["origin"] == "built-in"}
    assert builtin == {(b.capability, b.name) for b in BUILTIN}  # other tests may have registered more
    assert rows[("generator", "stub")]["ready"] and rows[("generator", "stub")]["origin"] == "built-in"
    for row in rows.values():
        assert row["ready"] == (not row["missing"])
        assert not row["missing"] or row["install"].startswith("pip install ")
    text = CliRunner().invoke(app, ["backends"])
    assert text.exit_code == 0 and "ImageTextScorer" in text.output and "open_clip" in text.output


def test_a_plugin_entry_point_registers_like_a_builtin(tmp_path: Path) -> None:
    """A real installed distribution (a dist-info folder on sys.path) declaring a `vlcli.backends` entry point."""
    (tmp_path / "echo_plugin.py").write_text(
        "from vlcli.backends import register\n"
        "class Echo:\n"
        "    name = 'echo'\n"
        "    supports_images = False\n"
        "    def __init__(self, model='echo', **options):\n"
        "        self.model = model\n"
        "register('generator', 'echo', 'echo_plugin:Echo', requires=('no_such_module_for_echo',))\n"
    )
    dist = tmp_path / "echo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[vlcli.backends]\necho = echo_plugin\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = (
        "import json; from vlcli.backends import available, create; from vlcli.backends.registry import catalog\n"
        "print(json.dumps([available('generator'), create('generator', 'echo', model='m').model, catalog()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    names, model, info = json.loads(out.stdout)
    assert "echo" in names and model == "m"
    assert info["plugins"] == [{"name": "echo", "module": "echo_plugin"}]
    (gen,) = [c for c in info["capabilities"] if c["capability"] == "generator"]
    (echo,) = [b for b in gen["backends"] if b["name"] == "echo"]
    assert echo["origin"] == "plugin echo (echo_plugin)" and not echo["ready"]
    assert echo["install"] == "pip install no_such_module_for_echo"


def test_unknown_backend_lists_the_registered_ones() -> None:
    with pytest.raises(Exception, match=r"unknown nsfw backend 'nope' \(available: hf, nudenet, null\)"):
        create("nsfw", "nope")
    assert available("ocr") == ["null", "paddleocr", "rapidocr"]


def test_the_stub_server_runs_from_the_testing_package() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vlcli.testing.stub_server", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--latency" in out.stdout
    assert (
        not (ROOT / "vlcli" / "stub_server.py").exists() and not (ROOT / "vlcli" / "tiny_models.py").exists()
    )
    stale = [
        p.name
        for p in (ROOT / "docs").glob("*.md")
        if re.search(r"vlcli[./](stub_server|tiny_models)", p.read_text())
    ]
    assert stale == []


def test_the_tiny_models_build_from_the_testing_package(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from vlcli.testing.tiny_models import tiny_image_classifier

    folder = tiny_image_classifier(tmp_path / "nsfw")
    scorer = create("nsfw", "hf", model=folder, device="cpu")
    scores = scorer.score([Image.new("RGB", (32, 32), "red")])
    assert len(scores) == 1 and 0.0 <= scores[0] <= 1.0
