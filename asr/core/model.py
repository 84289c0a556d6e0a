"""The network: front-end -> 2-D CNN -> bidirectional LSTMs -> linear -> CTC log-probabilities.

A streaming model (rnn_bidirectional: false) has forward-only LSTMs and DeepSpeech2's lookahead ("row")
convolution after them, so each output reads a fixed few steps of the future: asr.core.streaming runs it a chunk
at a time.

Shapes: B batch, S samples, F feature bins, T frames, C conv channels, H hidden size, V vocabulary.
Padded tensors travel with their lengths, and every valid output is exactly what the utterance
would give alone: convolutions see zeros past each length, and the backward LSTM direction reads
each utterance reversed within its own length.
"""

import torch
import torch.nn.functional as F
from torch import nn

from asr.core.features import Frontend, frame_lengths, padding_mask
from asr.core.model_config import ModelConfig, conv_output_length


def output_lengths(cfg: ModelConfig, sample_lengths: torch.Tensor) -> torch.Tensor:
    """Output steps (B,) for waveforms of the given sample lengths (B,): the front-end's framing, then
    each convolution's time stride. CTC can align a transcript only if this is at least its length
    plus its repeated adjacent labels."""
    lengths = frame_lengths(sample_lengths, cfg.frontend)
    for kernel, stride in zip(cfg.conv_kernels, cfg.conv_strides):
        lengths = conv_output_length(lengths, kernel[1], stride[1])
    return lengths


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length, leaving padding in place: (B, T, H) -> (B, T, H).

    The operation is its own inverse.
    """
    steps = torch.arange(x.shape[1], device=x.device)  # (T,)
    index = lengths[:, None] - 1 - steps  # (B, T)
    index = torch.where(index >= 0, index, steps)
    return x.gather(1, index[:, :, None].expand_as(x))


class ConvBlock(nn.Module):
    """Conv2d -> BatchNorm -> Hardtanh(0, 20), with time steps past each length zeroed."""

    def __init__(self, in_channels: int, out_channels: int, kernel: list[int], stride: list[int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        padding = (kernel[0] // 2, kernel[1] // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, F, T), lengths (B,) -> (B, C', F', T'), lengths (B,)"""
        x = F.hardtanh(self.norm(self.conv(x)), 0.0, 20.0)
        lengths = conv_output_length(lengths, self.kernel[1], self.stride[1])
        return x * padding_mask(lengths, x.shape[-1])[:, None, None, :], lengths

    def unpadded_in_time(self, x: torch.Tensor) -> torch.Tensor:
        """The block over frames that carry their own context (a stream's window), with no zeros added in time:
        x (B, C, F, T) -> (B, C', F', (T - kernel) // stride + 1)."""
        x = F.conv2d(x, self.conv.weight, None, self.conv.stride, (self.conv.padding[0], 0))
        return F.hardtanh(self.norm(x), 0.0, 20.0)


class BiLSTM(nn.Module):
    """A bidirectional LSTM layer that is exact on padded batches and runs on the fast padded path.

    Two unidirectional nn.LSTMs: the forward one reads the padded batch as it is (padding only ever
    follows the valid steps), the backward one reads each utterance reversed within its length.
    """

    def __init__(self, input_size: int, hidden_size: int, merge: str):
        super().__init__()
        self.merge = merge
        self.forward_lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(input_size, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, I), lengths (B,) -> (B, T, H) for "sum" or (B, T, 2H) for "concat"."""
        forward, _ = self.forward_lstm(x)
        backward, _ = self.backward_lstm(reverse_padded(x, lengths))
        backward = reverse_padded(backward, lengths)
        return forward + backward if self.merge == "sum" else torch.cat([forward, backward], dim=-1)


class ForwardLSTM(nn.Module):
    """A streaming model's LSTM layer: one direction, each output reading only the steps up to its own. Its
    weights are named as a BiLSTM's forward direction, which can start it."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.forward_lstm = nn.LSTM(input_size, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, I), lengths (B,) -> (B, T, H); padding only ever follows the valid steps, so it changes none."""
        return self.forward_lstm(x)[0]


class Lookahead(nn.Module):
    """DeepSpeech2's row convolution: each output step a per-feature weighted sum of its input step and the
    `steps` after it, zeros past each length. It starts as the identity."""

    def __init__(self, size: int, steps: int):
        super().__init__()
        self.steps = steps
        self.conv = nn.Conv1d(size, size, steps + 1, groups=size, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()[:, 0, 0] = 1.0

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, H), lengths (B,) -> (B, T, H)"""
        x = x * padding_mask(lengths, x.shape[1])[:, :, None]
        return self.unpadded(F.pad(x, (0, 0, 0, self.steps)))

    def unpadded(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T + steps, H), each step's future included -> (B, T, H)"""
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class DeepSpeech2(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = Frontend(cfg.frontend)
        channels = [1, *cfg.conv_channels]
        self.convs = nn.ModuleList(
            ConvBlock(c_in, c_out, k, s)
            for c_in, c_out, k, s in zip(channels, channels[1:], cfg.conv_kernels, cfg.conv_strides)
        )
        rnn_in, rnn_out = cfg.conv_channels[-1] * self.conv_feature_size(), cfg.rnn_output_size
        self.rnns = nn.ModuleList(
            BiLSTM(size, cfg.rnn_hidden, cfg.rnn_merge) if cfg.rnn_bidirectional else ForwardLSTM(size, cfg.rnn_hidden)
            for size in [rnn_in] + [rnn_out] * (cfg.rnn_layers - 1)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(rnn_out) for _ in range(cfg.rnn_layers))
        self.dropout = nn.Dropout(cfg.dropout)
        self.lookahead = None if cfg.rnn_bidirectional else Lookahead(rnn_out, cfg.lookahead)
        self.head = nn.Linear(rnn_out, cfg.vocab_size)

    def conv_feature_size(self) -> int:
        """F': feature bins left after the convolutions."""
        size = self.cfg.frontend.n_features
        for kernel, stride in zip(self.cfg.conv_kernels, self.cfg.conv_strides):
            size = conv_output_length(size, kernel[0], stride[0])
        return size

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waves (B, S) + sample lengths (B,) -> log-probabilities (B, T', V) float32 + lengths (B,)"""
        x, lengths = self.frontend(waves, lengths)  # (B, F, T)
        x = x[:, None]  # (B, 1, F, T)
        for conv in self.convs:
            x, lengths = conv(x, lengths)  # (B, C, F', T')
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T', C * F')
        for rnn, norm in zip(self.rnns, self.norms):
            x = self.dropout(norm(rnn(x, lengths)))  # (B, T', H)
        if self.lookahead is not None:
            x = self.lookahead(x, lengths)  # (B, T', H)
        return self.head(x).float().log_softmax(dim=-1), lengths


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
