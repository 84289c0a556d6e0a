"""Front-ends: padded waveforms -> normalised spectral features, on the model's device.

Every front-end takes a zero-padded batch of waveforms (B, S) with their lengths (B,) and returns
features (B, F, T) with frame lengths (B,). Frames are computed without centre padding, so a frame
of a short utterance never reads another utterance's padding: features are identical whether an
utterance is processed alone or inside a batch.

Normalisation is per utterance (over its valid frames), global (fixed per-bin statistics that training
estimates on its data, as ESPnet's global MVN: a streaming model's frames are final once computed) or none.
"""

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from asr.core.audio import SAMPLE_RATE
from asr.core.model_config import LOG_EPSILON, FrontendConfig


def frame_lengths(sample_lengths: torch.Tensor, cfg: FrontendConfig) -> torch.Tensor:
    """Frames per utterance for waveforms of the given lengths (B,): floor((S - n_fft) / hop) + 1."""
    frames = torch.div(sample_lengths - cfg.n_fft, cfg.hop_length, rounding_mode="floor") + 1
    return frames.clamp(min=0)


def padding_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(B, T) bool, True at valid positions t < lengths[b]."""
    return torch.arange(max_length, device=lengths.device) < lengths[:, None]


def spectral_transform(cfg: FrontendConfig) -> nn.Module:
    """The torchaudio transform for cfg.kind: (B, S) -> (B, F, T), before the log for linear/mel."""
    stft = dict(n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length, center=False)
    if cfg.kind == "linear":
        return torchaudio.transforms.Spectrogram(**stft, power=1.0)
    if cfg.kind == "log_mel":
        return torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_mels=cfg.n_mels, **stft)
    return torchaudio.transforms.MFCC(SAMPLE_RATE, n_mfcc=cfg.n_mfcc, log_mels=True,
                                      melkwargs=dict(n_mels=cfg.n_mels, **stft))


def normalize_features(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per-utterance, per-bin mean/variance normalisation over valid frames; padding set to 0.

    feats (B, F, T), lengths (B,) -> (B, F, T)
    """
    mask = padding_mask(lengths, feats.shape[-1])[:, None, :]  # (B, 1, T)
    count = lengths.clamp(min=1)[:, None, None].to(feats.dtype)  # (B, 1, 1)
    mean = (feats * mask).sum(-1, keepdim=True) / count
    var = (((feats - mean) * mask) ** 2).sum(-1, keepdim=True) / count
    return ((feats - mean) / (var + 1e-5).sqrt()) * mask


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al., 2019), each utterance masked independently."""

    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        self.freq = nn.ModuleList([torchaudio.transforms.FrequencyMasking(cfg.freq_mask_width, iid_masks=True)
                                   for _ in range(cfg.freq_masks)])
        self.time = nn.ModuleList([torchaudio.transforms.TimeMasking(cfg.time_mask_width, iid_masks=True,
                                                       p=cfg.time_mask_max_ratio)
                                   for _ in range(cfg.time_masks)])

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (B, F, T) -> (B, F, T), masked with 0 (the normalised mean)."""
        for mask in [*self.freq, *self.time]:
            feats = mask(feats)
        return feats


class Frontend(nn.Module):
    """Waveforms (B, S) + lengths (B,) -> features (B, F, T) + frame lengths (B,)."""

    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        self.cfg = cfg
        with torch.device("cpu"):  # torchaudio reads the filterbank it computes: never on the meta device
            self.transform = spectral_transform(cfg)
        self.spec_augment = SpecAugment(cfg)
        if cfg.normalize == "global":  # estimated when training starts (asr.training.statistics), then kept
            self.register_buffer("feature_mean", torch.zeros(cfg.n_features))  # (F,)
            self.register_buffer("feature_std", torch.ones(cfg.n_features))  # (F,)

    def spectral_features(self, waves: torch.Tensor) -> torch.Tensor:
        """waves (B, S) -> un-normalised features (B, F, T) of every whole frame, float32."""
        if waves.shape[-1] < self.cfg.n_fft:  # too short for one frame: give the STFT something to read
            waves = F.pad(waves, (0, self.cfg.n_fft - waves.shape[-1]))
        feats = self.transform(waves.float())  # (B, F, T)
        if self.cfg.kind == "mfcc":
            return feats
        return torch.log1p(feats) if self.cfg.kind == "linear" else torch.log(feats + LOG_EPSILON)

    def normalized(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """feats (B, F, T) normalised as the config says, zero where mask (B, T) is False."""
        if self.cfg.normalize is True:
            return normalize_features(feats, mask.sum(-1))
        if self.cfg.normalize == "global":
            feats = (feats - self.feature_mean[:, None]) / self.feature_std[:, None]
        return feats * mask[:, None, :]

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waves (B, S), lengths (B,) -> features (B, F, T) in float32 on any device, autocast or not (in
        bf16, the mel matmul and log move the normalised features by up to ~5), frame lengths (B,)."""
        with torch.autocast(waves.device.type, enabled=False):
            frames = frame_lengths(lengths, self.cfg)
            feats = self.spectral_features(waves)  # (B, F, T)
            feats = self.normalized(feats, padding_mask(frames, feats.shape[-1]))
            if self.training:
                feats = self.spec_augment(feats)
            return feats, frames
