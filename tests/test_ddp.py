"""Two-process DDP on the CPU (gloo) through `asr train`, in a subprocess so pytest is not re-launched."""

import pytest

from conftest import run_asr

pytestmark = pytest.mark.slow


def test_two_process_ddp_trains_one_epoch(librispeech_tree, tmp_path):
    run_asr("prepare", "librispeech", librispeech_tree, tmp_path)
    manifest = tmp_path / "train-tiny.jsonl"
    exp = tmp_path / "exp"
    out = run_asr("train", "tiny", f"data.train_manifests=[{manifest}]", f"data.val_manifests=[{manifest}]",
                  f"exp_dir={exp}", "trainer.max_epochs=1", "trainer.devices=2", "trainer.strategy=ddp",
                  "trainer.enable_progress_bar=false", timeout=300)
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out.stderr
    assert (exp / "model.safetensors").exists() and (exp / "checkpoints" / "last.ckpt").exists()
