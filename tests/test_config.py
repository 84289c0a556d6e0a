import pytest

from asr.config import ConfigError
from asr.training import load_experiment_config


def test_named_configs_load_and_overrides_apply():
    cfg = load_experiment_config("tiny", ["model.rnn_hidden=32", "data.train_manifests=[a.jsonl, b.jsonl]",
                                          "trainer.max_epochs=2", "optim.lr=1e-4"])
    assert cfg.model.rnn_hidden == 32
    assert cfg.data.train_manifests == ["a.jsonl", "b.jsonl"]
    assert cfg.trainer["max_epochs"] == 2
    assert cfg.optim.lr == 1e-4


@pytest.mark.parametrize("override, message", [
    ("model.rnn_hiden=32", "unknown config key 'model.rnn_hiden'"),
    ("model.frontend.kind=spectrogram", "frontend.kind must be one of"),
    ("model.rnn_layers=two", "'model.rnn_layers' must be int"),
    ("data.train_manifests=a.jsonl", "'data.train_manifests' must be list"),
    ("trainer.max_epoch=3", "unknown config key 'trainer.max_epoch'"),
    ("model.rnn_layers", "not of the form key.path=value"),
])
def test_bad_keys_and_values_are_refused_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_experiment_config("tiny", [override])


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="tiny"):
        load_experiment_config("huge")


def test_a_yaml_file_path_works(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("exp_dir: somewhere\nmodel:\n  rnn_layers: 1\n")
    cfg = load_experiment_config(str(path))
    assert (cfg.exp_dir, cfg.model.rnn_layers) == ("somewhere", 1)
