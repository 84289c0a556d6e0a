import json

import numpy as np
import pytest
import torch

from asr.cli import main
from asr.core.audio import SAMPLE_RATE, write_audio
from asr.core.config import ConfigError
from asr.training.config import load_experiment_config
from asr.training.train import check_trainer_keys, default_precision


def test_named_configs_load_and_overrides_apply():
    cfg = load_experiment_config("tiny", ["model.rnn_hidden=32", "data.train_manifests=[a.jsonl, b.jsonl]",
                                          "trainer.max_epochs=2", "optim.lr=1e-4"])
    assert cfg.model.rnn_hidden == 32
    assert cfg.data.train_manifests == ["a.jsonl", "b.jsonl"]
    assert cfg.trainer["max_epochs"] == 2
    assert cfg.optim.lr == 1e-4


@pytest.mark.parametrize("override, message", [
    ("model.rnn_hiden=32", "unknown config key 'model.rnn_hiden'"),
    ("data.seed=1", "unknown config key 'data.seed'"),  # one seed: the top-level one
    ("model.vocab_size=100", "model.vocab_size is not a setting"),  # training takes it from the tokenizer
    ("model=3", "model.: expected a mapping, got 3"),
    ("model=vocab_size", "model.: expected a mapping, got 'vocab_size'"),  # a string, not a section holding the key
    ("model.frontend.kind=spectrogram", "frontend.kind must be one of"),
    ("model.rnn_layers=two", "'model.rnn_layers' must be int"),
    ("data.train_manifests=a.jsonl", "'data.train_manifests' must be list"),
    ("trainer.max_epoch=3", "unknown config key 'trainer.max_epoch'"),
    ("model.rnn_layers", "not of the form key.path=value"),
    ("model.rnn_layers=0", "rnn_layers and rnn_hidden of at least 1"),
    ("model.conv_strides=[[2],[2,1]]", "model.conv_strides: each entry is a [freq, time] pair"),
    ("model.conv_kernels=[[0,11],[11,11]]", "model.conv_kernels: each entry is a [freq, time] pair"),
    ("model.dropout=1.5", "model.dropout must be in .0, 1., got 1.5"),
    ("model.frontend.hop_ms=0", "hop_ms must each cover at least one sample"),
    ("model.frontend.n_mels=0", "need n_mels >= 1"),
    ("trainer.max_epochs=x", "'trainer.max_epochs' must be Optional[int], got 'x'"),
    ("trainer.precision=17", "'trainer.precision' must be Union[Literal[64, 32, 16]"),
    ("trainer.deterministic=sometimes", "'trainer.deterministic' must be"),
])
def test_bad_keys_and_values_are_refused_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        check_trainer_keys(load_experiment_config("tiny", [override]).trainer)  # as `asr train` checks them


def test_trainer_values_of_the_types_lightning_takes_pass():
    cfg = load_experiment_config("tiny", ["trainer.precision=bf16-mixed", "trainer.devices=[0, 1]",
                                          "trainer.limit_train_batches=0.5", "trainer.deterministic=warn"])
    check_trainer_keys(cfg.trainer)
    assert cfg.trainer["devices"] == [0, 1] and cfg.trainer["precision"] == "bf16-mixed"


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="tiny"):
        load_experiment_config("huge")


def test_a_yaml_file_path_works(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("exp_dir: somewhere\nmodel:\n  rnn_layers: 1\n")
    cfg = load_experiment_config(str(path))
    assert (cfg.exp_dir, cfg.model.rnn_layers) == ("somewhere", 1)


@pytest.mark.parametrize("cuda, accelerator, expected", [
    (True, "auto", "bf16-mixed"), (True, "gpu", "bf16-mixed"), (True, "cuda", "bf16-mixed"),
    (True, "cpu", "32-true"),  # a CPU recipe on a GPU machine: float32, as on a machine without one
    (False, "auto", "32-true"),
])
def test_default_precision_is_bf16_only_on_a_gpu(monkeypatch, cuda, accelerator, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: cuda)
    assert default_precision(accelerator) == expected


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epochs=-2", "trainer settings: `max_epochs` must be a non-negative integer or -1"),
    ("trainer.accelerator=tpu", "trainer settings: Requirement 'torch_xla"),
    ("trainer.devices=0", "trainer settings: `Trainer(devices=0)` value is not a valid input"),
    ("exp_dir={tmp}/a.wav", "exp_dir={tmp}/a.wav: {tmp}/a.wav is a file, not a folder"),
    ("data.val_manifests=[{tmp}/missing.jsonl]", "{tmp}/missing.jsonl: no such manifest"),
    ("data.max_batch_seconds=-1", "data: need max_batch_seconds > 0"),
    ("data.max_batch_size=0", "data: need max_batch_seconds > 0, max_batch_size >= 1 (or null)"),
    ("data.num_workers=-1", "and num_workers >= 0, got 6.0, None and -1"),
    ("optim.lr=-1", "optim: need lr > 0"),
    ("save_every_n_steps=-1", "save_every_n_steps must be 0 (only at epoch ends) or more, got -1"),
    ("trainer.max_steps=0", "trainer.max_steps=0 trains nothing (no optimizer step, so no model is written); set it "
                            "above 0, or leave it out"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 trains nothing (no epoch, so no model is written)"),
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches=0 trains nothing (no training batch"),
    ("trainer.limit_train_batches=0.0", "trainer.limit_train_batches=0.0 trains nothing (no training batch"),
], ids=["max-epochs", "tpu", "devices", "exp-dir-a-file", "missing-manifest", "batch-seconds", "batch-size",
        "workers", "lr", "save-every", "no-steps", "no-epochs", "no-batches", "no-share-of-batches"])
def test_asr_train_refuses_bad_settings_before_writing_anything(tmp_path, capsys, override, message):
    write_audio(tmp_path / "a.wav", np.zeros(SAMPLE_RATE, np.float32))
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "HI"}) + "\n")
    before = sorted(tmp_path.rglob("*"))
    code = main(["train", "tiny", f"data.train_manifests=[{tmp_path / 'm.jsonl'}]", f"exp_dir={tmp_path / 'exp'}",
                 f"data.val_manifests=[{tmp_path / 'm.jsonl'}]", override.format(tmp=tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "asr train: error: " in err and message.format(tmp=tmp_path) in err, err
    assert sorted(tmp_path.rglob("*")) == before  # no experiment folder, no logs
