"""Untrusted files: a crafted pickle posing as a checkpoint or a model is refused by every command that
loads one, without running it, and a bundle whose config and weights disagree is refused by name."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from asr.cli import main
from asr.core import config
from asr.core.audio import SAMPLE_RATE, write_audio
from asr.core.bundle import BundleError, load_bundle, save_bundle
from asr.core.model import DeepSpeech2
from asr.core.text import CharTokenizer
from asr.training.config import load_experiment_config

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
    (lambda m, t: t.pop("rnns.1.forward_lstm.weight_hh_l0"), "missing tensor rnns.1.forward_lstm.weight_hh_l0"),
    (lambda m, t: extra(t), "unexpected tensor head.extra"),
    (lambda m, t: changed_config(m), "size mismatch for head.weight: the config makes it [29, 64], the file holds "
                                     "[29, 128]"),
    (lambda m, t: changed_vocabulary(m), "the model predicts 40 tokens but the tokenizer has 29"),
    (lambda m, t: m.update(model_config="{not json"), "damaged bundle metadata"),
    (lambda m, t: m.update(model_config='{"rnn_layers": "five"}'), "config key 'rnn_layers' must be int"),
    (lambda m, t: m.update(tokenizer='["char"]'), "damaged bundle metadata: a tokenizer is described by a JSON object"),
    (lambda m, t: m.update(tokenizer='{"kind": "sentencepiece", "model": 3}'), "needs its model as a base64 string"),
    (lambda m, t: m.update(model_config="[" * 100000 + "]" * 100000), "damaged bundle metadata"),
], ids=["missing-tensor", "extra-tensor", "config-shapes", "vocabulary", "config-not-json", "config-wrong-type",
        "tokenizer-a-list", "tokenizer-model-a-number", "config-nested-deeply"])
def test_a_bundle_whose_config_and_weights_disagree_is_refused(bundle, tamper, message):
    path, metadata, tensors = bundle
    tamper(metadata, tensors)
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


# loads the bundles (or exports the checkpoints) named on the command line under a cap on address space of 1 GiB
# over what the imports took, printing each one's BundleError as a JSON string (anything else is a traceback and
# a failed run)
CAPPED_LOAD = """
import json, resource, sys
import torch
torch.set_num_threads(1)
from asr.core.bundle import BundleError, bundle_from_checkpoint, load_bundle
size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
for path in sys.argv[1:]:
    try:
        load_bundle(path) if path.endswith(".safetensors") else bundle_from_checkpoint(path, path + ".safetensors")
        print(json.dumps("loaded"))
    except BundleError as err:
        print(json.dumps(str(err)))
"""

# config settings that would make the model ask for up to 308 TB, and the refusal each must get, before any of it
HUGE = {
    "rnn_hidden": (10**6, "size mismatch for head.weight: the config makes it [29, 1000000], the file holds [29, 128]"),
    "rnn_hidden ": (3 * 10**4, "size mismatch for head.weight: the config makes it [29, 30000]"),
    "conv_channels": ([10**6, 16], "size mismatch for convs.0.conv.weight: the config makes it [1000000, 1, 11, 11]"),
    "frontend": ({"kind": "log_mel", "n_mels": 10**6, "freq_masks": 0, "time_masks": 0},
                 "the config's front-end (log_mel, n_mels 1000000, win_ms 20) needs 257000320 values, the weights "
                 "hold 10600"),
    "rnn_layers": (10**6, "the config asks for 1000000 rnn_layers, the weights hold 2"),
}


@pytest.mark.parametrize("kind", ["bundle", "checkpoint"])
def test_a_config_asking_for_huge_layers_is_refused_by_the_weights_shapes_within_a_memory_cap(bundle, tmp_path, kind):
    path, metadata, tensors = bundle
    crafted = []
    for key, (value, _) in HUGE.items():
        settings = json.loads(metadata["model_config"]) | {key.strip(): value}
        if kind == "bundle":
            crafted.append(tmp_path / f"{len(crafted)}.safetensors")
            save_file(tensors, str(crafted[-1]), metadata=metadata | {"model_config": json.dumps(settings)})
        else:  # as `asr train` writes it: the experiment config and the LightningModule's state
            crafted.append(tmp_path / f"{len(crafted)}.ckpt")
            experiment = config.to_dict(load_experiment_config("tiny")) | {"model": settings}
            torch.save({"hyper_parameters": {"experiment": experiment, "tokenizer": json.loads(metadata["tokenizer"])},
                        "state_dict": {f"model.{name}": t for name, t in tensors.items()}}, crafted[-1])
    done = subprocess.run([sys.executable, "-c", CAPPED_LOAD, *map(str, crafted)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.splitlines()) == len(crafted)  # one refusal per crafted file, none skipped
    for path, line, (_, message) in zip(crafted, done.stdout.splitlines(), HUGE.values()):
        assert json.loads(line).startswith(f"{path}: the weights do not match the model config: {message}")
