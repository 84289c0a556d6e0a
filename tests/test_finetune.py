"""Fine-tuning: `init_from` starts training from a bundle's weights (all but the output layer with
`init_new_head`), and refuses a bundle that does not fit."""

import pytest
import torch

from asr.core import config
from asr.core.bundle import save_bundle
from asr.core.model import DeepSpeech2
from asr.core.text import build_tokenizer, train_sentencepiece
from asr.training.config import load_experiment_config
from asr.training.module import ASRModule, init_weights


def tiny_module(*overrides: str) -> ASRModule:
    cfg = load_experiment_config("tiny", list(overrides))
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.model.vocab_size = len(tokenizer)
    return ASRModule(config.to_dict(cfg), tokenizer.to_dict())


def tiny_bundle(path, *overrides: str):
    module = tiny_module(*overrides)
    torch.manual_seed(1)
    model = DeepSpeech2(module.cfg.model)
    return save_bundle(path, model, module.tokenizer), model


def sentencepiece_module(tmp_path) -> ASRModule:
    """tiny's network over 30 SentencePiece units instead of characters."""
    sp = train_sentencepiece(["the cat sat on the mat", "a dog ran in the park"] * 20, tmp_path / "sp.model",
                             vocab_size=30, model_type="bpe")
    return tiny_module("tokenizer.kind=sentencepiece", f"tokenizer.model={sp}")


def test_init_from_copies_every_weight_and_ignores_training_only_settings(tmp_path):
    bundle, source = tiny_bundle(tmp_path / "a.safetensors")
    module = tiny_module("model.dropout=0.3", "model.frontend.freq_masks=2")  # training-only: allowed to differ
    init_weights(module, str(bundle))
    for name, tensor in source.state_dict().items():
        assert torch.equal(module.model.state_dict()[name], tensor), name


def test_init_from_a_different_network_names_the_setting(tmp_path):
    bundle, _ = tiny_bundle(tmp_path / "a.safetensors", "model.rnn_hidden=24", "model.frontend.n_mels=64")
    with pytest.raises(config.ConfigError, match=r"model.frontend.n_mels: 64 in the bundle, 40 here.*"
                                                 r"model.rnn_hidden: 24 in the bundle"):
        init_weights(tiny_module(), str(bundle))


def test_init_from_a_missing_bundle_names_it(tmp_path):
    with pytest.raises(ValueError, match="nothing.safetensors: no such model file"):
        init_weights(tiny_module(), str(tmp_path / "nothing.safetensors"))


def test_init_new_head_copies_the_encoder_to_a_new_vocabulary(tmp_path):
    bundle, source = tiny_bundle(tmp_path / "chars.safetensors")
    module = sentencepiece_module(tmp_path)
    fresh_head = {k: v.clone() for k, v in module.model.head.state_dict().items()}
    init_weights(module, str(bundle), new_head=True)
    weights = module.model.state_dict()
    for name, tensor in source.state_dict().items():
        if name.startswith("head."):
            assert torch.equal(weights[name], fresh_head[name.removeprefix("head.")]), name
        else:
            assert torch.equal(weights[name], tensor), name
    assert weights["head.weight"].shape == (len(module.tokenizer), source.head.in_features)


def test_init_from_another_tokenizer_without_a_new_head_is_refused(tmp_path):
    bundle, _ = tiny_bundle(tmp_path / "chars.safetensors")
    with pytest.raises(config.ConfigError, match="tokenizer differs.*init_new_head=true"):
        init_weights(sentencepiece_module(tmp_path), str(bundle))


def test_init_new_head_still_refuses_a_different_encoder(tmp_path):
    bundle, _ = tiny_bundle(tmp_path / "a.safetensors", "model.rnn_hidden=24")
    with pytest.raises(config.ConfigError, match="model.rnn_hidden: 24 in the bundle"):
        init_weights(tiny_module(), str(bundle), new_head=True)


def test_init_new_head_without_init_from_is_refused():
    with pytest.raises(config.ConfigError, match="tiny.yaml: init_new_head=true .* init_from is not set"):
        load_experiment_config("tiny", ["init_new_head=true"])
