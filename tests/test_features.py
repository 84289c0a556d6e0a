import pytest
import torch

from asr.core.features import Frontend, FrontendConfig, frame_lengths, normalize_features


def padded_batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random waveforms zero-padded to the longest: (B, S), (B,)"""
    torch.manual_seed(0)
    waves = torch.randn(len(lengths), max(lengths))
    lengths = torch.tensor(lengths)
    return waves * (torch.arange(waves.shape[1]) < lengths[:, None]), lengths


@pytest.mark.parametrize("kind, bins", [("linear", 161), ("log_mel", 80), ("mfcc", 40)])
def test_front_ends_give_the_configured_bins_and_frame_counts(kind, bins):
    cfg = FrontendConfig(kind=kind)
    waves, lengths = padded_batch([16000, 9000])
    feats, frames = Frontend(cfg).eval()(waves, lengths)
    assert feats.shape[:2] == (2, bins)
    assert frames.tolist() == [(16000 - cfg.n_fft) // 160 + 1, (9000 - cfg.n_fft) // 160 + 1]
    assert feats.shape[2] == frames.max()


def test_linear_spectrogram_is_deepspeech2s():
    cfg = FrontendConfig(kind="linear")
    assert (cfg.win_length, cfg.hop_length, cfg.n_features) == (320, 160, 161)


@pytest.mark.parametrize("kind", ["linear", "log_mel", "mfcc"])
def test_features_of_an_utterance_do_not_depend_on_its_batch(kind):
    frontend = Frontend(FrontendConfig(kind=kind)).eval()
    waves, lengths = padded_batch([16000, 7000, 12000])
    feats, frames = frontend(waves, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone, alone_frames = frontend(waves[i:i + 1, :n], lengths[i:i + 1])
        assert alone_frames.item() == frames[i]
        torch.testing.assert_close(feats[i, :, :frames[i]], alone[0], atol=1e-4, rtol=1e-4)
        assert feats[i, :, frames[i]:].abs().sum() == 0  # padding stays zero


def test_normalisation_ignores_padding():
    feats = torch.randn(2, 3, 10) * 5 + 3
    lengths = torch.tensor([10, 6])
    feats[1, :, 6:] = 1000.0  # padding that would wreck the statistics if it were counted
    out = normalize_features(feats, lengths)
    valid = out[1, :, :6]
    torch.testing.assert_close(valid.mean(-1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(valid.std(-1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    assert out[1, :, 6:].abs().sum() == 0


def test_spec_augment_masks_only_in_training():
    frontend = Frontend(FrontendConfig(kind="log_mel", time_mask_max_ratio=0.2))
    waves, lengths = padded_batch([32000, 32000])
    eval_feats, _ = frontend.eval()(waves, lengths)
    torch.manual_seed(1)
    train_feats, _ = frontend.train()(waves, lengths)
    zeroed = (train_feats == 0) & (eval_feats != 0)
    assert zeroed.any(), "SpecAugment masked nothing in training mode"
    assert torch.equal(frontend.eval()(waves, lengths)[0], eval_feats)


def test_audio_shorter_than_one_window_gives_no_frames():
    cfg = FrontendConfig()
    assert frame_lengths(torch.tensor([100, cfg.n_fft, cfg.n_fft + 160]), cfg).tolist() == [0, 1, 2]
    feats, frames = Frontend(cfg).eval()(torch.zeros(1, 100), torch.tensor([100]))
    assert frames.item() == 0


@pytest.mark.parametrize("kind", ["linear", "log_mel", "mfcc"])
def test_features_stay_float32_under_cpu_bf16_autocast(kind):
    """trainer.precision=bf16-mixed on a CPU autocasts the model: the features must not be computed in bf16."""
    frontend = Frontend(FrontendConfig(kind=kind)).eval()
    waves, lengths = padded_batch([16000, 9000])
    expected, _ = frontend(waves, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = frontend(waves, lengths)
    assert feats.dtype == torch.float32
    torch.testing.assert_close(feats, expected)
