"""The network's configuration: the front-end's and the model's settings, as a bundle or an ONNX export's JSON
holds them. Imports no torch, so reading an exported model's JSON loads none."""

import math
from dataclasses import dataclass, field
from typing import Literal

from asr.core.audio import SAMPLE_RATE
from asr.core.config import ConfigError

KINDS = ("linear", "log_mel", "mfcc")
LOG_EPSILON = 1e-6
MAX_MS = 1000  # the longest window and hop, in ms
MAX_MASKS = 100  # SpecAugment masks of each kind an utterance may get (2 in DeepSpeech2 and Park et al.)


@dataclass
class FrontendConfig:
    kind: str = "linear"  # "linear" (DeepSpeech2), "log_mel" or "mfcc"
    win_ms: float = 20.0
    hop_ms: float = 10.0
    n_mels: int = 80
    n_mfcc: int = 40
    # True: per-utterance mean/variance over valid frames (needs the whole utterance); "global": fixed statistics
    # estimated on the training data when training starts (streaming models: every frame is final once computed)
    normalize: bool | Literal["global"] = True
    freq_masks: int = 2  # SpecAugment, training only
    freq_mask_width: int = 27
    time_masks: int = 2
    time_mask_width: int = 40
    time_mask_max_ratio: float = 0.05  # a time mask covers at most this share of the batch's frames

    @property
    def win_length(self) -> int:
        return int(round(SAMPLE_RATE * self.win_ms / 1000))

    @property
    def n_fft(self) -> int:
        """The linear spectrogram keeps DeepSpeech2's 161 bins; filterbanks get a power-of-two FFT."""
        return self.win_length if self.kind == "linear" else 1 << (self.win_length - 1).bit_length()

    @property
    def hop_length(self) -> int:
        return int(round(SAMPLE_RATE * self.hop_ms / 1000))

    @property
    def n_features(self) -> int:
        """F: feature bins per frame."""
        return {"linear": self.n_fft // 2 + 1, "log_mel": self.n_mels, "mfcc": self.n_mfcc}[self.kind]

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"frontend.kind must be one of {KINDS}, got {self.kind!r}")
        if not (0 < self.win_ms <= MAX_MS and 0 < self.hop_ms <= MAX_MS) or min(self.win_length, self.hop_length) < 1:
            raise ConfigError(f"frontend.win_ms and hop_ms must each cover at least one sample at {SAMPLE_RATE} Hz, "
                              f"and at most {MAX_MS} ms, got {self.win_ms} and {self.hop_ms}")
        if self.n_mels < 1 or (self.kind == "mfcc" and not 1 <= self.n_mfcc <= self.n_mels):
            raise ConfigError(f"frontend: need n_mels >= 1 (and 1 <= n_mfcc <= n_mels for mfcc), got {self.n_mels} "
                              f"and {self.n_mfcc}")
        if min(self.freq_masks, self.freq_mask_width, self.time_masks, self.time_mask_width) < 0:
            raise ConfigError("frontend: SpecAugment mask counts and widths must not be negative")
        if max(self.freq_masks, self.time_masks) > MAX_MASKS:  # each is a module: a crafted count must not fill memory
            raise ConfigError(f"frontend: at most {MAX_MASKS} SpecAugment masks of a kind, got {self.freq_masks} "
                              f"and {self.time_masks}")



@dataclass
class ModelConfig:
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    conv_channels: list[int] = field(default_factory=lambda: [32, 32])
    conv_kernels: list[list[int]] = field(default_factory=lambda: [[41, 11], [21, 11]])  # (freq, time)
    conv_strides: list[list[int]] = field(default_factory=lambda: [[2, 2], [2, 1]])  # (freq, time)
    rnn_layers: int = 5
    rnn_hidden: int = 1024
    rnn_merge: str = "sum"  # how the two directions combine: "sum" (H) or "concat" (2H)
    rnn_bidirectional: bool = True  # False: forward-only LSTMs, a streaming model (rnn_merge then has no effect)
    lookahead: int = 0  # future output steps a streaming model's lookahead convolution reads after its LSTMs
    dropout: float = 0.1
    vocab_size: int = 29  # the tokenizer's size: training sets it (an experiment config may not), a bundle stores it

    def __post_init__(self):
        if not len(self.conv_channels) == len(self.conv_kernels) == len(self.conv_strides):
            raise ConfigError("model.conv_channels, conv_kernels and conv_strides must have the same length")
        if self.rnn_merge not in ("sum", "concat"):
            raise ConfigError(f"model.rnn_merge must be 'sum' or 'concat', got {self.rnn_merge!r}")
        if not self.conv_channels or min(self.conv_channels) < 1 or self.rnn_layers < 1 or self.rnn_hidden < 1:
            raise ConfigError("model: need at least one conv layer, and conv_channels, rnn_layers and rnn_hidden "
                              f"of at least 1, got {self.conv_channels}, {self.rnn_layers} and {self.rnn_hidden}")
        for name in ("conv_kernels", "conv_strides"):
            if any(len(pair) != 2 or min(pair) < 1 for pair in getattr(self, name)):
                raise ConfigError(f"model.{name}: each entry is a [freq, time] pair of positive integers, "
                                  f"got {getattr(self, name)}")
        if self.lookahead < 0 or (self.lookahead and self.rnn_bidirectional):
            raise ConfigError(f"model.lookahead is a number of future steps >= 0, for a forward-only model "
                              f"(rnn_bidirectional: false), got {self.lookahead}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")

    @property
    def rnn_output_size(self) -> int:
        """The LSTM stack's output size: H, or 2H for bidirectional layers concatenated."""
        return self.rnn_hidden * (2 if self.rnn_bidirectional and self.rnn_merge == "concat" else 1)

    @property
    def output_step_seconds(self) -> float:
        """Seconds between output steps: the front-end's hop times the convolutions' time strides."""
        return self.frontend.hop_ms / 1000 * math.prod(stride[1] for stride in self.conv_strides)


def conv_output_length(length, kernel: int, stride: int):
    """Output size of a convolution padded by kernel // 2 on both sides (int or tensor): floor((L + 2 * pad -
    kernel) / stride) + 1, written with a numerator that is never negative, as ONNX's division truncates."""
    return (length + 2 * (kernel // 2) - kernel + stride) // stride


@dataclass(frozen=True)
class StreamGeometry:
    """How a streaming model's output steps depend on its input frames, to run it a window at a time: output step t
    reads frames [step_frames * t - left_frames, step_frames * t + right_frames] (frame f: samples [f * hop,
    f * hop + n_fft)), and its log-probabilities also read the `lookahead` LSTM steps after t."""

    hop: int
    n_fft: int
    step_frames: int
    left_frames: int
    right_frames: int
    lookahead: int

    def window_frames(self, steps: int) -> int:
        """Frames of the window that computes `steps` consecutive output steps."""
        return self.step_frames * (steps - 1) + self.left_frames + self.right_frames + 1

    def window_samples(self, steps: int) -> int:
        return (self.window_frames(steps) - 1) * self.hop + self.n_fft


def output_length(cfg: ModelConfig, samples: int) -> int:
    """Output steps for a waveform of `samples` samples: the front-end's frames, then each convolution's stride."""
    length = max((samples - cfg.frontend.n_fft) // cfg.frontend.hop_length + 1, 0)
    for kernel, stride in zip(cfg.conv_kernels, cfg.conv_strides):
        length = conv_output_length(length, kernel[1], stride[1])
    return length


def stream_geometry(cfg: ModelConfig) -> StreamGeometry:
    """The StreamGeometry of a model: each convolution's (padded) time kernel composed from the last down."""
    first = last = 0  # the input range of output step 0, at each layer going down
    for kernel, stride in reversed(list(zip(cfg.conv_kernels, cfg.conv_strides))):
        first = first * stride[1] - kernel[1] // 2
        last = last * stride[1] - kernel[1] // 2 + kernel[1] - 1
    return StreamGeometry(cfg.frontend.hop_length, cfg.frontend.n_fft, math.prod(s[1] for s in cfg.conv_strides),
                          -first, last, cfg.lookahead)
