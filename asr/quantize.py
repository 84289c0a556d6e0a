"""int8 dynamic quantization for CPU inference: LSTM and Linear weights stored as int8, activations
quantized on the fly per batch. The convolutions and the front-end stay float32.

torch 2.14 marks torch.ao.quantization as deprecated in favour of torchao, but torchao's quantize_ covers
nn.Linear only; torch.ao's dynamic quantization is still the one that makes an int8 nn.LSTM.
"""

import warnings

import torch
from torch import nn

QUANTIZE = ("int8",)


def quantize_model(model: nn.Module, kind: str | None) -> nn.Module:
    """`model` with its nn.LSTM and nn.Linear layers dynamically quantized to int8 (a copy), or as it is
    for kind None. CPU only."""
    if kind is None:
        return model
    if kind not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}, got {kind!r}")
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 dynamic quantization runs on the CPU only: use --device cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return torch.ao.quantization.quantize_dynamic(model.eval(), {nn.LSTM, nn.Linear}, dtype=torch.qint8)
