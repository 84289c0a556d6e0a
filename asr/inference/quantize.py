"""int8 dynamic quantization for CPU inference: LSTM and Linear weights stored as int8, activations
quantized on the fly per batch. The convolutions and the front-end stay float32. `quantize_model` does it
to the PyTorch model (asr transcribe/evaluate, TorchScript export), `quantize_onnx` to an exported ONNX
graph, with onnxruntime's quantizer: torch's int8 LSTM has no ONNX form.

torch 2.14 marks torch.ao.quantization as deprecated in favour of torchao, but torchao's quantize_ covers
nn.Linear only; torch.ao's dynamic quantization is still the one that makes an int8 nn.LSTM.
"""

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from asr.core.config import ConfigError
from asr.inference.formats import QUANTIZE


def quantize_model(model: nn.Module, kind: str | None) -> nn.Module:
    """`model` with its nn.LSTM and nn.Linear layers dynamically quantized to int8 (a copy), or as it is
    for kind None. CPU only."""
    if kind is None:
        return model
    if kind not in QUANTIZE:
        raise ConfigError(f"quantize must be one of {QUANTIZE}, got {kind!r}")
    if next(model.parameters()).device.type != "cpu":
        raise ConfigError("int8 dynamic quantization runs on the CPU only: use --device cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return torch.ao.quantization.quantize_dynamic(model.eval(), {nn.LSTM, nn.Linear}, dtype=torch.qint8)


def quantize_onnx(model_input: Path, model_output: Path) -> Path:
    """The ONNX graph `model_input` with its LSTM and MatMul weights dynamically quantized to int8, written
    to `model_output`. The front-end's nodes (the mel filterbank is a MatMul) stay float32: quantizing
    spectra, whose values span many orders of magnitude, to 8 bits would erase the quiet bins."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    front_end = [node.name for node in onnx.load(str(model_input)).graph.node if node.name.startswith("/frontend/")]
    root = logging.getLogger()  # onnxruntime logs its advice to pre-process the graph (shape inference) there
    root.addFilter(no_preprocessing_advice)
    try:
        quantize_dynamic(model_input, model_output, op_types_to_quantize=["LSTM", "MatMul"],
                         nodes_to_exclude=front_end, weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(no_preprocessing_advice)
    return model_output


def no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """False for onnxruntime's advice to run its pre-processing first, which quantizing this graph does not need."""
    return "pre-processing before quantization" not in record.getMessage()
