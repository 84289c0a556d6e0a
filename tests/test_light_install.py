"""`pip install asr` without extras, as a user who only transcribes installs it: the wheel in a fresh venv, its
dependencies from PyPI, no torch anywhere in it; it transcribes a file, serves a request, and says what a command
that needs torch needs. Prints the venv's size and install time (docs/benchmarks.md)."""

import shutil
import subprocess
import sys
import time

import httpx
import pytest
from test_packaging import WITHOUT_PYTHONPATH, build_wheel
from test_serve import wait_until

TIMEOUT = 120
pytestmark = pytest.mark.slow  # it downloads the runtime's dependencies from PyPI: about a minute


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    """The bin/ folder of a fresh `python3 -m venv` with the wheel installed in it without extras."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install.sh")
    tmp = tmp_path_factory.mktemp("light")
    wheel = build_wheel(tmp)
    venv = tmp / "venv"
    subprocess.run(["python3", "-m", "venv", venv], check=True, env=WITHOUT_PYTHONPATH)
    start = time.monotonic()
    subprocess.run([venv / "bin" / "pip", "install", "--disable-pip-version-check", "--quiet", wheel], check=True,
                   env=WITHOUT_PYTHONPATH, timeout=1200)
    size = subprocess.run(["du", "-sh", venv], capture_output=True, text=True, check=True).stdout.split()[0]
    print(f"\nlight venv: {size}, installed in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return venv / "bin"


def run(light, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([light / args[0], *args[1:]], capture_output=True, text=True, env=WITHOUT_PYTHONPATH,
                          timeout=TIMEOUT, **kwargs)


def test_the_light_install_has_no_torch_and_transcribes_without_importing_it(light, tmp_path):
    assert run(light, "python", "-c", "import torch").returncode != 0  # not installed
    subprocess.run(["espeak-ng", "-w", tmp_path / "hello.wav", "hello world this is a test"], check=True)
    code = ("import sys, asr.cli\nassert asr.cli.main(['transcribe', 'hello.wav']) == 0\n"
            "assert not any(name.split('.')[0] == 'torch' for name in sys.modules)")
    result = run(light, "python", "-c", code, cwd=tmp_path)
    assert result.returncode == 0 and "WORLD THIS IS A TEST" in result.stdout, result.stderr[-3000:]
    refused = run(light, "asr", "train", "tiny", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == "asr train needs the training extra: pip install 'asr[train]'"


def test_the_light_install_serves_a_request(light, tmp_path):
    subprocess.run(["espeak-ng", "-w", tmp_path / "hello.wav", "hello world this is a test"], check=True)
    with open(tmp_path / "serve.log", "w+") as log:
        server = subprocess.Popen([light / "asr", "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=log,
                                  text=True, env=WITHOUT_PYTHONPATH | {"OMP_NUM_THREADS": "1"})
        try:
            url = server.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), log.seek(0) or log.read()[-3000:]
            wait_until(lambda: httpx.get(f"{url}/health").json()["status"] == "ok")
            with open(tmp_path / "hello.wav", "rb") as audio:
                answer = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": audio}, timeout=TIMEOUT)
            assert answer.status_code == 200 and "WORLD THIS IS A TEST" in answer.json()["text"], answer.text
        finally:
            server.terminate()
            server.wait(timeout=TIMEOUT)
