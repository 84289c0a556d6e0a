"""A streaming model run a window at a time, with its state carried from one window to the next.

A window computes `n` consecutive output steps [t0, t0 + n) from the frames they read (StreamGeometry: the
convolutions' context on both sides, recomputed from the samples each time) and the LSTMs' state after step
t0 - 1. The lookahead convolution needs the LSTM outputs of the steps after each one, so a window gives the
log-probabilities of steps [t0 - lookahead, t0 + n - lookahead) and keeps its last `lookahead` LSTM outputs as
context for the next. Positions outside the stream (before its start, past its end once the end is known) are
zeroed at every layer, as the whole-utterance forward's padding is, so a stream's log-probabilities are those of
DeepSpeech2.forward on the whole recording. The numpy driver is asr.inference.streaming; this module is the step
that it runs (and that `asr export` writes as ONNX).
"""

import torch
from torch import nn

from asr.core.features import frame_lengths
from asr.core.model import DeepSpeech2
from asr.core.model_config import conv_output_length, stream_geometry


def in_stream(first: torch.Tensor, count: int, length: torch.Tensor) -> torch.Tensor:
    """(count,) bool: whether positions first, first + 1, ... lie in [0, length)."""
    index = first + torch.arange(count, device=first.device)
    return (index >= 0) & (index < length)


class StreamingStep(nn.Module):
    """One window of a streaming DeepSpeech2 (rnn_bidirectional: false), in eval mode."""

    def __init__(self, model: DeepSpeech2):
        super().__init__()
        if model.cfg.rnn_bidirectional or model.cfg.frontend.normalize is True:
            raise ValueError("only a streaming model (rnn_bidirectional: false, frontend.normalize: global or false) "
                             "runs a window at a time")
        self.model, self.geometry = model.eval(), stream_geometry(model.cfg)

    def initial_state(self) -> list[torch.Tensor]:
        """h, c (layers, 1, H) and context (1, lookahead, H) before a stream's first window: zeros."""
        cfg = self.model.cfg
        hidden = torch.zeros(cfg.rnn_layers, 1, cfg.rnn_hidden)
        return [hidden, hidden.clone(), torch.zeros(1, cfg.lookahead, cfg.rnn_output_size)]

    def forward(self, waves: torch.Tensor, first_frame: torch.Tensor, total_samples: torch.Tensor, h: torch.Tensor,
                c: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """waves (1, W): the samples of the window's frames [first_frame, first_frame + window_frames(n)), zeros
        before the stream and past its end; first_frame () int64: step_frames * t0 - left_frames; total_samples ()
        int64: the stream's length once its end is known, else any larger number; h, c, context: the state.
        -> log_probs (1, n, V) of steps [t0 - lookahead, t0 + n - lookahead), h, c, context after step t0 + n - 1."""
        model, cfg = self.model, self.model.cfg
        length = frame_lengths(total_samples, cfg.frontend)
        feats = model.frontend.spectral_features(waves)  # (1, F, frames)
        x = model.frontend.normalized(feats, in_stream(first_frame, feats.shape[-1], length)[None])[:, None]
        first = first_frame
        for conv, kernel, stride in zip(model.convs, cfg.conv_kernels, cfg.conv_strides):
            x = conv.unpadded_in_time(x)  # (1, C, F', T')
            first = torch.div(first + kernel[1] // 2, stride[1], rounding_mode="floor")
            length = conv_output_length(length, kernel[1], stride[1])
            x = x * in_stream(first, x.shape[-1], length)  # the next layer's zeros outside the stream
        x = x.flatten(1, 2).transpose(1, 2)  # (1, n, C * F'), steps [t0, t0 + n)
        states = []
        for layer, (rnn, norm) in enumerate(zip(model.rnns, model.norms)):
            x, state = rnn.forward_lstm(x, (h[layer:layer + 1], c[layer:layer + 1]))
            x = norm(x)  # (1, n, H)
            states.append(state)
        x = torch.cat([context, x * in_stream(first, x.shape[1], length)[:, None]], dim=1)  # (1, lookahead + n, H)
        log_probs = model.head(model.lookahead.unpadded(x)).float().log_softmax(dim=-1)  # (1, n, V)
        h_out, c_out = (torch.cat(parts) for parts in zip(*states))
        return log_probs, h_out, c_out, x[:, x.shape[1] - cfg.lookahead:]
