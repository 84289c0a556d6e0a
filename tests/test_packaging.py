"""What `pip install .` gives a user: every library asr imports is declared in pyproject.toml, and the wheel holds
every subpackage, the configs asr train names and the shipped model."""

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the package tomli
    import tomli as tomllib

from asr.core.audio import write_audio
from conftest import tone

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# what runs in the installed venv runs without PYTHONPATH, which may name the checkout (or its installed asr)
WITHOUT_PYTHONPATH = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules() -> set[str]:
    """The top-level names of every absolute import under asr/, the standard library and asr left out."""
    names = set()
    for path in (ROOT / "asr").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"asr"}


def test_every_imported_library_is_declared():
    project = PROJECT["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {canonical(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requirements}
    providers = importlib.metadata.packages_distributions()
    missing = {module: providers.get(module) for module in imported_top_level_modules()
               if not declared & {canonical(dist) for dist in providers.get(module, [module])}}
    assert not missing, f"imported by asr/ but not declared in pyproject.toml (module: distributions): {missing}"


def test_every_subpackage_is_listed():
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "asr").rglob("__init__.py")}
    assert set(PROJECT["tool"]["setuptools"]["packages"]) == on_disk | {"asr.conf"}


def build_wheel(tmp: Path) -> Path:
    """The wheel of a copy of the checkout (so no stale build/ folder of the checkout leaks into it), in tmp/dist."""
    source = tmp / "source"
    for name in ("asr", "conf"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps",
                    "--no-build-isolation", "-w", tmp / "dist", source], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp / "dist").glob("asr-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a fresh venv (seeing the libraries of the Python running the tests) with the wheel built
    from a copy of the checkout installed in it, not editable, without its dependencies."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"asr/conf/tiny.yaml", "asr/conf/small.yaml", "asr/assets/default.safetensors",
            "asr/assets/default.onnx", "asr/assets/default.onnx.json"} <= names
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    subprocess.run([*pip, "--python", venv / "bin" / "python", "install", "--no-deps", wheel], check=True,
                   env=WITHOUT_PYTHONPATH, capture_output=True, timeout=600)
    see_the_running_environments_libraries(venv)
    return venv / "bin"


def see_the_running_environments_libraries(venv: Path):
    """Puts the site-packages folders of the Python running the tests (a venv's, the system's, the user's or on
    PYTHONPATH) on the new venv's path, after its own, so that its asr is the wheel's and torch, sentencepiece, ...
    are the ones installed here. The checkout itself is not one of them."""
    (venv_site,) = (venv / "lib").glob("python*/site-packages")
    paths = dict.fromkeys(p for p in sys.path if Path(p).name in ("site-packages", "dist-packages"))
    (venv_site / "running-environment.pth").write_text("".join(f"{path}\n" for path in paths))


@pytest.mark.slow
def test_installed_wheel_finds_its_configs(installed, tmp_path):
    write_audio(tmp_path / "a.wav", tone(seconds=1.0))
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "HELLO"}) + "\n")

    def asr(*args):  # run in tmp_path, outside the checkout, so only the installed package can be imported
        return subprocess.run([installed / "asr", *args], cwd=tmp_path, env=WITHOUT_PYTHONPATH, capture_output=True,
                              text=True, timeout=300)

    located = subprocess.run([installed / "python", "-c", "import asr; print(asr.__file__)"], cwd=tmp_path,
                             env=WITHOUT_PYTHONPATH, capture_output=True, text=True, check=True).stdout
    assert Path(located.strip()).is_relative_to(installed.parent), located  # not the checkout's editable install
    checked = asr("check-manifest", "m.jsonl")  # --config small by default
    assert checked.returncode == 0, checked.stderr
    assert "1 lines, 0 with problems" in checked.stdout, checked.stdout
    for name in ("tiny", "small", "ds2"):
        trained = asr("train", name)  # the config resolves; no manifests given, so it stops before training
        assert trained.returncode == 2 and "no data.train_manifests" in trained.stderr, trained.stderr
