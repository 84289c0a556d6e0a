"""The README's examples, run as written in a scratch folder, so that what they show cannot go stale: each
block after a `<!-- docs-test: NAME -->` line runs (bash, with `asr` this checkout's, or python), and when
a paragraph starting "prints" and a ```text block follow it, that is exactly what it must print."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- docs-test: (\S+) -->\n```(\w+)\n(.*?)```\n"  # the block, then maybe what it prints:
                   r"(?:\nprints[^\n]*(?:\n[^\n`]+)*\n\n```text\n(.*?)```)?", re.S)
NEEDS = {"python-api": "quick-start", "lm": "quick-start", "export": "quick-start", "onnxruntime": "export",
         "stream": "quick-start", "stream-api": "quick-start", "gates": "quick-start"}  # the blocks whose files a block reads


def blocks() -> dict[str, tuple[str, str, str | None]]:
    """name -> (language, code, the output it must print or None), in the README's order."""
    return {name: (language, code, output or None) for name, language, code, output in BLOCK.findall(
        (REPO / "README.md").read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """run(NAME) -> the stdout of README block NAME, run in one scratch folder after the blocks it needs."""
    scratch, done = tmp_path_factory.mktemp("readme"), {}
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    asr = f'asr() {{ "{sys.executable}" -m asr "$@"; }}\n'  # the asr of this checkout, in the Python running the tests

    def run_block(name: str) -> str:
        if name not in done:
            if name in NEEDS:
                run_block(NEEDS[name])
            language, code, _ = blocks()[name]
            command = (["bash", "-euo", "pipefail", "-c", asr + code] if language == "bash"
                       else [sys.executable, "-c", code])
            result = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"README block {name} failed:\n{result.stderr[-3000:]}"
            done[name] = result.stdout
        return done[name]

    return run_block


def test_the_readme_marks_its_examples():
    assert list(blocks()) == ["quick-start", "python-api", "lm", "export", "onnxruntime", "stream", "stream-api",
                              "gates"]


@pytest.mark.parametrize("name", ["quick-start", "python-api", "lm", "export", "onnxruntime", "stream", "stream-api",
                                  "gates"])
def test_a_readme_example_runs_and_prints_what_the_readme_says(name, run):
    if name in ("export", "onnxruntime"):
        pytest.importorskip("onnxruntime", reason="pip install -e '.[train]'")
    if name == "export" and not shutil.which("sox"):
        pytest.skip("sox is not installed: run scripts/install.sh")
    expected = blocks()[name][2]
    stdout = run(name)
    if expected is not None:
        assert stdout == expected
