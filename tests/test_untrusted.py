"""Untrusted files: a crafted pickle posing as a checkpoint or a model is refused by every command that
loads one, without running it, and a bundle whose config and weights disagree is refused by name."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from asr.audio import SAMPLE_RATE, write_audio
from asr.bundle import BundleError, load_bundle, save_bundle
from asr.cli import main
from asr.model import DeepSpeech2
from asr.text import CharTokenizer
from asr.training import load_experiment_config

torch.set_num_threads(1)


class Exploit:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def evil(tmp_path):
    """(a torch.save'd checkpoint lookalike, a plain pickle, both named .ckpt, and the marker their unpickling
    would create)."""
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.ckpt"
    torch.save({"state_dict": Exploit(marker), "hyper_parameters": {}}, checkpoint)
    plain = tmp_path / "plain.ckpt"
    plain.write_bytes(pickle.dumps(Exploit(marker)))
    return checkpoint, plain, marker


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("which", [0, 1], ids=["torch.save", "pickle"])
def test_asr_export_refuses_a_crafted_checkpoint(evil, tmp_path, capsys, which):
    code, err = run(capsys, "export", evil[which], tmp_path / "out.safetensors")
    assert code == 2 and f"asr export: error: {evil[which]}: " in err
    assert "not a checkpoint of asr train" in err
    if which == 0:  # torch's safe unpickler names what the file asked for
        assert "refused" in err and "posix.system" in err
    assert not evil[2].exists() and not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("which", [0, 1], ids=["torch.save", "pickle"])
def test_asr_transcribe_refuses_a_crafted_model(evil, tmp_path, capsys, which):
    write_audio(tmp_path / "a.wav", np.zeros(SAMPLE_RATE, np.float32))
    model = evil[which].rename(tmp_path / "model.safetensors")
    code, err = run(capsys, "transcribe", tmp_path / "a.wav", "--model", model, "--device", "cpu")
    assert code == 2 and f"{model}: not a model bundle" in err
    assert not evil[2].exists()


def test_resume_and_init_from_refuse_a_crafted_checkpoint(evil, tmp_path, capsys):
    write_audio(tmp_path / "a.wav", np.zeros(SAMPLE_RATE, np.float32))
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "HI"}) + "\n")
    last = tmp_path / "exp" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(evil[0].read_bytes())
    settings = [f"exp_dir={tmp_path / 'exp'}", f"data.train_manifests=[{tmp_path / 'm.jsonl'}]",
                f"data.val_manifests=[{tmp_path / 'm.jsonl'}]", "trainer.max_epochs=1"]
    code, err = run(capsys, "train", "tiny", *settings, "--resume")
    assert code == 2 and f"asr train: error: {last}: refused" in err
    assert not evil[2].exists()
    last.unlink()
    code, err = run(capsys, "train", "tiny", *settings, f"init_from={evil[1]}")
    assert code == 2 and f"{evil[1]}: not a model bundle" in err
    assert not evil[2].exists()


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    model = DeepSpeech2(load_experiment_config("tiny").model).eval()
    path = save_bundle(tmp_path / "m.safetensors", model, CharTokenizer())
    with safe_open(str(path), "pt") as f:
        return path, f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def extra(tensors):
    tensors["head.extra"] = torch.zeros(3)


def changed_config(metadata):
    config = json.loads(metadata["model_config"])
    config["rnn_hidden"] = 64
    metadata["model_config"] = json.dumps(config)


def changed_vocabulary(metadata):
    config = json.loads(metadata["model_config"])
    config["vocab_size"] = 40
    metadata["model_config"] = json.dumps(config)


@pytest.mark.parametrize("tamper, message", [
    (lambda m, t: t.pop("rnns.1.forward_lstm.weight_hh_l0"), 'Missing key(s) in state_dict: "rnns.1.forward_lstm'),
    (lambda m, t: extra(t), 'Unexpected key(s) in state_dict: "head.extra"'),
    (lambda m, t: changed_config(m), "size mismatch for rnns.0.forward_lstm.weight_ih_l0"),
    (lambda m, t: changed_vocabulary(m), "the model predicts 40 tokens but the tokenizer has 29"),
    (lambda m, t: m.update(model_config="{not json"), "damaged bundle metadata"),
    (lambda m, t: m.update(model_config='{"rnn_layers": "five"}'), "config key 'rnn_layers' must be int"),
], ids=["missing-tensor", "extra-tensor", "config-shapes", "vocabulary", "config-not-json", "config-wrong-type"])
def test_a_bundle_whose_config_and_weights_disagree_is_refused(bundle, tamper, message):
    path, metadata, tensors = bundle
    tamper(metadata, tensors)
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
