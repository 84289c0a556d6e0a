"""scripts/install.sh and build_kenlm.sh, run against an apt-get that records how it is called: every call
waits for the dpkg lock that another apt-get may hold (as install_tts.sh does), rather than failing at once."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
RECORDER = ("#!/bin/sh\necho \"$@\" >> \"{log}\"\n"
            "echo 'E: Could not get lock /var/lib/dpkg/lock-frontend' >&2\nexit 100\n")


@pytest.mark.parametrize("script", ["install.sh", "build_kenlm.sh"])
def test_every_apt_get_call_waits_for_the_dpkg_lock(script, tmp_path):
    bin_dir, log = tmp_path / "bin", tmp_path / "apt-get.log"
    bin_dir.mkdir()
    commands = {"apt-get": RECORDER.format(log=log),
                "dpkg": "#!/bin/sh\nexit 1\n",  # no package installed: the scripts go to apt-get
                "sudo": "#!/bin/sh\nexec \"$@\"\n"}
    for name, text in commands.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    result = subprocess.run(["bash", str(SCRIPTS / script), str(tmp_path / "prefix")], capture_output=True, text=True,
                            env=os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, timeout=60)
    assert result.returncode == 100  # the recorder fails like a held lock, and the script stops there
    calls = log.read_text().splitlines()
    assert calls and all(call.startswith("-o DPkg::Lock::Timeout=600 ") for call in calls), calls
