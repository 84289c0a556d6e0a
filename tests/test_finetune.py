"""Fine-tuning: `init_from` takes the network from a bundle, lets the config change only training settings,
and starts training from the bundle's weights (all but the output layer with `init_new_head`)."""

from pathlib import Path

import pytest
import torch
import yaml

from asr.core import config
from asr.core.bundle import load_bundle, save_bundle
from asr.core.paths import DEFAULT_MODEL
from asr.core.features import FrontendConfig
from asr.core.model import DeepSpeech2
from asr.core.text import build_tokenizer, train_sentencepiece
from asr.training.config import load_experiment_config
from asr.training.module import ASRModule, init_weights
from asr.training.statistics import estimate_statistics, needs_statistics
from asr.core.audio import load_audio
from asr.core.manifest import read_manifest

REPO = Path(__file__).resolve().parent.parent


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


def test_init_from_takes_the_network_from_the_bundle_and_training_settings_from_the_config(tmp_path):
    bundle, source = tiny_bundle(tmp_path / "a.safetensors", "model.rnn_hidden=24", "model.frontend.n_mels=64",
                                 "model.frontend.time_mask_width=7")
    cfg_path = tmp_path / "finetune.yaml"
    cfg_path.write_text(yaml.safe_dump({"init_from": str(bundle),
                                        "model": {"dropout": 0.3, "frontend": {"freq_masks": 1}}}))
    cfg = load_experiment_config(str(cfg_path))
    expected = source.cfg
    expected.dropout, expected.frontend.freq_masks = 0.3, 1  # training-only: the config's...
    defaults = FrontendConfig()  # ...or the defaults, not the bundle's (tiny's time_masks=0, and 7 here)
    expected.frontend.time_masks, expected.frontend.time_mask_width = defaults.time_masks, defaults.time_mask_width
    assert cfg.model == expected  # all else the bundle's


def test_init_from_copies_every_weight_and_accepts_the_same_network_restated(tmp_path):
    bundle, source = tiny_bundle(tmp_path / "a.safetensors")
    module = tiny_module(f"init_from={bundle}", "model.dropout=0.3")  # tiny.yaml restates the bundle's network
    init_weights(module, str(bundle))
    for name, tensor in source.state_dict().items():
        assert torch.equal(module.model.state_dict()[name], tensor), name


@pytest.mark.parametrize("new_head", [False, True])
def test_init_from_refuses_a_config_that_changes_the_network_and_names_the_key(tmp_path, new_head):
    bundle, _ = tiny_bundle(tmp_path / "a.safetensors", "model.rnn_hidden=24")
    with pytest.raises(config.ConfigError, match=r"tiny.yaml: init_from .*: model.rnn_hidden is 128 here but 24 in "
                                                 r"the bundle.*drop model.rnn_hidden \(only dropout, frontend"):
        load_experiment_config("tiny", [f"init_from={bundle}", f"init_new_head={str(new_head).lower()}"])


def test_the_recipes_fine_tuning_configs_restate_no_network():
    """Every recipe config with init_from sets only training settings under model: (digits-finetune's is the
    shipped model, whose network it must then get)."""
    for path in REPO.glob("recipes/*/*.yaml"):
        data = yaml.safe_load(path.read_text())
        if data.get("init_from"):
            assert set(data.get("model", {})) <= {"dropout", "frontend"}, path
            assert set(data.get("model", {}).get("frontend", {})) <= {
                "freq_masks", "freq_mask_width", "time_masks", "time_mask_width", "time_mask_max_ratio"}, path
    cfg = load_experiment_config(str(REPO / "recipes/digits/digits-finetune.yaml"))
    shipped = load_bundle(DEFAULT_MODEL)[0].cfg
    assert (cfg.model.rnn_hidden, cfg.model.conv_kernels, cfg.model.frontend.kind) == (
        shipped.rnn_hidden, shipped.conv_kernels, shipped.frontend.kind)


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


def test_init_new_head_without_init_from_is_refused():
    with pytest.raises(config.ConfigError, match="tiny.yaml: init_new_head=true .* init_from is not set"):
        load_experiment_config("tiny", ["init_new_head=true"])


def test_a_streaming_model_starts_from_a_bidirectional_bundle(tmp_path):
    bundle, source = tiny_bundle(tmp_path / "bi.safetensors")
    streaming = ("model.rnn_bidirectional=false", "model.lookahead=2", "model.frontend.normalize=global")
    with pytest.raises(config.ConfigError, match="rnn_hidden"):  # only the streaming settings may change
        tiny_module(f"init_from={bundle}", *streaming, "model.rnn_hidden=7")
    module = tiny_module(f"init_from={bundle}", *streaming)
    init_weights(module, str(bundle))
    model = module.model
    assert not model.cfg.rnn_bidirectional and model.cfg.lookahead == 2
    for name, value in model.state_dict().items():  # the forward directions and all else are the bundle's
        if not name.startswith(("lookahead.", "frontend.feature_")):
            torch.testing.assert_close(value, source.state_dict()[name], msg=name)
    assert needs_statistics(model)  # the bundle normalised per utterance: none to take


@pytest.mark.parametrize("merge", ["sum", "concat"])
def test_a_deeper_model_starts_from_a_shallower_bundle_computing_nearly_what_it_did(tmp_path, merge):
    torch.manual_seed(0)
    waves, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000])
    bundle, source = tiny_bundle(tmp_path / "a.safetensors", f"model.rnn_merge={merge}")
    module = tiny_module(f"init_from={bundle}", f"model.rnn_merge={merge}", "model.rnn_layers=4")
    deeper = module.model
    before = {k: v.clone() for k, v in deeper.state_dict().items()}
    init_weights(module, str(bundle))
    assert len(deeper.rnns) == 4
    for name, value in source.state_dict().items():  # all the bundle's weights but its last norm's
        if not name.startswith("norms.1."):
            assert torch.equal(deeper.state_dict()[name], value), name
    assert torch.equal(deeper.norms[3].weight, source.norms[1].weight)  # which the top norm takes over
    assert not torch.equal(deeper.rnns[3].forward_lstm.weight_ih_l0, before["rnns.3.forward_lstm.weight_ih_l0"])
    source.eval(), deeper.eval()
    with torch.no_grad():
        expected, new = source(waves, lengths)[0], deeper(waves, lengths)[0]  # log-probabilities (B, T', V)
    assert (new - expected).abs().max() < 0.2  # measured: 0.045 (sum), 0.065 (concat)
    deeper.load_state_dict(before | source.state_dict())
    with torch.no_grad():  # what two freshly initialised layers on top would do instead: 2.3
        assert (deeper(waves, lengths)[0] - expected).abs().max() > 1


def test_a_fine_tuned_model_may_not_have_fewer_layers_than_its_bundle(tmp_path):
    bundle, _ = tiny_bundle(tmp_path / "a.safetensors", "model.rnn_layers=3")
    with pytest.raises(config.ConfigError, match=r"model.rnn_layers is 2 here but 3 in the bundle.*rnn_layers grow"):
        load_experiment_config("tiny", [f"init_from={bundle}"])


def test_feature_statistics_are_estimated_on_the_training_audio(tmp_path, librispeech_tree):
    from asr.corpora.librispeech import prepare_librispeech

    manifest = prepare_librispeech(librispeech_tree, tmp_path)["train-tiny"]
    module = tiny_module("model.rnn_bidirectional=false", "model.frontend.normalize=global")
    estimate_statistics(module.model, [str(manifest)], seed=0, count=5)
    assert not needs_statistics(module.model)
    feats = torch.cat([module.model.frontend.spectral_features(torch.from_numpy(load_audio(u.audio_filepath))[None])[0]
                       for u in read_manifest(manifest)], dim=-1)  # (F, T) every utterance
    mean, std = module.model.frontend.feature_mean, module.model.frontend.feature_std
    assert ((mean - feats.mean(-1)).abs() < 0.5 * feats.std(-1)).all()  # 5 of 20 utterances: near the whole set's
    assert (std > 0.2 * feats.std(-1)).all() and (std < 5 * feats.std(-1)).all()


def test_feature_statistics_from_no_readable_audio_name_the_manifest(tmp_path):
    manifest = tmp_path / "broken.jsonl"
    (tmp_path / "a.wav").write_text("not audio")
    manifest.write_text('{"audio_filepath": "a.wav", "duration": 1.0, "text": "A"}\n')
    module = tiny_module("model.rnn_bidirectional=false", "model.frontend.normalize=global")
    with pytest.raises(config.ConfigError, match="broken.jsonl.*check the audio paths"):
        estimate_statistics(module.model, [str(manifest)], seed=0)
