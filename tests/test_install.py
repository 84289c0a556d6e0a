"""scripts/install.sh and build_kenlm.sh, run against stand-ins for apt-get, dpkg and sudo that record how they are
called: every apt-get call waits for the dpkg lock that another apt-get may hold (as install_tts.sh does), rather
than failing at once; install.sh installs into a venv (the active one, else the checkout's .venv, made with Debian's
python3-venv), and refuses a Python whose packages the system manages (PEP 668) with the command to run instead."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
RECORDER = "#!/bin/sh\necho \"$@\" >> \"{log}\"\n{then}\n"
HELD_LOCK = "echo 'E: Could not get lock /var/lib/dpkg/lock-frontend' >&2; exit 100"


def run_with(tmp_path: Path, script: Path, *args: str, dpkg_has_all: bool, apt_get_works: bool = False,
             **env: str) -> subprocess.CompletedProcess:
    """Runs `bash script args` with apt-get (failing as if another held the dpkg lock, unless apt_get_works) and
    python3 (failing) replaced by recorders that log their arguments to tmp_path/NAME.log, dpkg answering whether
    every package is installed, and without the caller's VIRTUAL_ENV and PYTHON unless given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    commands = {"apt-get": RECORDER.format(log=tmp_path / "apt-get.log", then="exit 0" if apt_get_works else HELD_LOCK),
                "python3": RECORDER.format(log=tmp_path / "python3.log", then="exit 1"),  # so nothing is installed
                "dpkg": f"#!/bin/sh\nexit {0 if dpkg_has_all else 1}\n",
                "sudo": "#!/bin/sh\nexec \"$@\"\n"}
    for name, text in commands.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHON")}
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=60,
                          env=base | env | {"PATH": f"{bin_dir}:{os.environ['PATH']}"})


def checkout(tmp_path: Path) -> Path:
    """A checkout with install.sh and no .venv yet: its install.sh."""
    scripts = tmp_path / "checkout" / "scripts"
    scripts.mkdir(parents=True)
    return Path(shutil.copy(SCRIPTS / "install.sh", scripts))


@pytest.mark.parametrize("script", ["install.sh", "build_kenlm.sh"])
def test_every_apt_get_call_waits_for_the_dpkg_lock(script, tmp_path):
    result = run_with(tmp_path, SCRIPTS / script, str(tmp_path / "prefix"), dpkg_has_all=False)
    assert result.returncode == 100  # the recorder fails like a held lock, and the script stops there
    calls = (tmp_path / "apt-get.log").read_text().splitlines()
    assert calls and all(call.startswith("-o DPkg::Lock::Timeout=600 ") for call in calls), calls


def test_with_no_venv_active_it_chooses_the_checkouts_dot_venv_and_changes_nothing(tmp_path):
    script = checkout(tmp_path)
    result = run_with(tmp_path, script, "--print-python", dpkg_has_all=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{script.parent.parent / '.venv' / 'bin' / 'python'}\n"
    assert not (script.parent.parent / ".venv").exists()
    assert not (tmp_path / "python3.log").exists() and not (tmp_path / "apt-get.log").exists()


@pytest.mark.parametrize("variable", ["VIRTUAL_ENV", "PYTHON"])
def test_an_active_venv_or_a_named_python_is_used(variable, tmp_path):
    venv = tmp_path / "elsewhere"
    value = str(venv) if variable == "VIRTUAL_ENV" else str(venv / "bin" / "python")
    result = run_with(tmp_path, checkout(tmp_path), "--print-python", dpkg_has_all=True, **{variable: value})
    assert result.returncode == 0 and result.stdout == f"{venv / 'bin' / 'python'}\n", result.stderr


def test_with_no_venv_active_it_makes_dot_venv_after_installing_debians_python3_venv(tmp_path):
    result = run_with(tmp_path, checkout(tmp_path), dpkg_has_all=False, apt_get_works=True)
    assert result.returncode == 1  # the python3 recorder fails, and the script stops there
    install = (tmp_path / "apt-get.log").read_text().splitlines()[-1]
    assert install.split()[-5:] == ["--no-install-recommends", "espeak-ng", "sox", "libportaudio2", "python3-venv"], install
    assert (tmp_path / "python3.log").read_text() == "-m venv .venv\n"


def system_managed_python() -> str | None:
    """/usr/bin/python3 when the system manages its packages (PEP 668: stock Debian and Ubuntu), else None."""
    python = Path("/usr/bin/python3")
    stdlib = python.exists() and subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                                                capture_output=True, text=True).stdout.strip()
    return str(python) if stdlib and (Path(stdlib) / "EXTERNALLY-MANAGED").exists() else None


@pytest.mark.skipif(system_managed_python() is None, reason="no /usr/bin/python3 managed by the system (PEP 668) here")
def test_a_python_the_system_manages_is_refused_with_the_command_to_run(tmp_path):
    result = run_with(tmp_path, checkout(tmp_path), dpkg_has_all=True, PYTHON=system_managed_python())
    assert result.returncode == 2
    assert "/usr/bin/python3 is managed by the system (PEP 668)" in result.stderr, result.stderr
    assert "run `bash scripts/install.sh` without PYTHON" in result.stderr
    assert not (tmp_path / "apt-get.log").exists()



def test_ci_runs_the_readmes_install_and_test_commands_as_written():
    install = (ROOT / "README.md").read_text().split("## Install\n", 1)[1]
    block = re.search(r"```bash\n(bash scripts/install\.sh.*?)```", install, re.S).group(1)  # the developers' block
    readme = [line.split("  #")[0].strip() for line in block.splitlines()]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [line for line in readme if "not slow" not in line]  # all the tests, not the fast tier alone
