"""Export a model for deployment: ONNX (for onnxruntime) or TorchScript (for torch.jit.load / libtorch).

The exported graph is the whole model, front-end included: waveforms (B, S) float32 at 16 kHz + sample
lengths (B,) int64 -> log-probabilities (B, T, V) float32 + output lengths (B,) int64, with the batch and
length axes dynamic. The padded batch must be at least one analysis window long (n_fft samples, in the
JSON as min_samples): the PyTorch front-end pads shorter input, the exported graph does not.
The backward LSTM direction reads each utterance reversed within its own length in the exported graph
too, so a padded batch gives every utterance exactly what it gets alone.

ONNX's STFT operator takes no complex tensors from torch's exporter, so for ONNX the front-end's
torch.stft is replaced by the same transform written as a strided convolution with a windowed DFT basis
(`ConvSpectrogram`); TorchScript keeps torch.stft. A JSON file beside the export (`model.onnx` ->
`model.onnx.json`) holds what a deployment needs to decode: the vocabulary, the blank id, the sample rate, the
front-end settings and the seconds per output step.

An LM beside the source model (MODEL.lm.bin, with its lexicon and tuned weights, as the shipped model has) is
copied beside the export under its name (model.onnx -> model.lm.bin, ...), so that `asr transcribe --model
model.onnx` decodes with it as the source does.

Float32 weights that float16 holds exactly (a bundle saved as float16, as the shipped model is) are stored in the
ONNX file as float16, each followed by a Cast to float32: the file is half the size and computes the same numbers.

`--quantize int8` (asr.inference.quantize) stores the LSTM and linear weights as int8: torch's dynamic quantization
for TorchScript, onnxruntime's for ONNX (torch's int8 LSTM has no ONNX form).
"""

import copy
import dataclasses
import importlib.util
import json
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torchaudio
from torch import nn

from asr.core import config
from asr.core.audio import SAMPLE_RATE
from asr.core.bundle import bundle_from_checkpoint, load_bundle, save_bundle
from asr.core.lm import MODEL_LM_SUFFIXES, lexicon_path, model_lm, own_tuned_path, tuned_path
from asr.core.model import DeepSpeech2
from asr.core.model_config import stream_geometry
from asr.core.paths import ASSETS, model_path
from asr.core.text import BLANK
from asr.core.errors import AsrError
from asr.inference.formats import EXPORT_FORMATS
from asr.core.streaming import StreamingStep
from asr.inference.network import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    STEP_INPUT_NAMES,
    STEP_OUTPUT_NAMES,
    info_path,
    stream_graph_path,
)
from asr.inference.quantize import quantize_model, quantize_onnx

ONNX_OPSET = 17
HALF_MIN_VALUES = 1024  # smaller initializers stay float32: a Cast node would cost more than it saves


class ConvSpectrogram(nn.Module):
    """torchaudio's Spectrogram (center=False) as a strided Conv1d over a windowed DFT basis, for ONNX.

    waves (B, S) -> |STFT|^power (B, n_fft // 2 + 1, T), T = (S - n_fft) // hop + 1
    """

    def __init__(self, spectrogram: torchaudio.transforms.Spectrogram):
        super().__init__()
        if spectrogram.center or spectrogram.pad or spectrogram.normalized or spectrogram.power is None:
            raise ValueError("ConvSpectrogram covers only center=False, pad=0, normalized=False, real power")
        n_fft, hop, power = spectrogram.n_fft, spectrogram.hop_length, spectrogram.power
        window = torch.zeros(n_fft)  # torch.stft centres a window shorter than n_fft in the frame
        start = (n_fft - spectrogram.win_length) // 2
        window[start:start + spectrogram.win_length] = spectrogram.window
        bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]  # (K, 1)
        angle = 2 * math.pi * bins * torch.arange(n_fft, dtype=torch.float64) / n_fft  # (K, n_fft)
        basis = torch.cat([angle.cos(), -angle.sin()]) * window.double()  # (2K, n_fft): real, imaginary
        self.register_buffer("basis", basis.float()[:, None, :])  # (2K, 1, n_fft)
        self.hop, self.power = hop, power

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """waves (B, S) -> (B, K, T)"""
        real, imag = nn.functional.conv1d(waves[:, None], self.basis, stride=self.hop).chunk(2, dim=1)
        power = real ** 2 + imag ** 2  # (B, K, T)
        return power if self.power == 2 else power ** (self.power / 2)


def with_conv_spectrograms(model: nn.Module) -> nn.Module:
    """A copy of `model` whose torchaudio Spectrogram modules are ConvSpectrograms (same outputs)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, torchaudio.transforms.Spectrogram):
                setattr(parent, name, ConvSpectrogram(child))
    return model


def example_inputs(model: DeepSpeech2) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of two utterances of different lengths to trace with: waves (2, S), lengths (2,)."""
    samples = max(SAMPLE_RATE, 4 * model.cfg.frontend.n_fft)
    return torch.randn(2, samples) * 0.1, torch.tensor([samples, samples * 5 // 8])


def export_onnx(model: DeepSpeech2, out: Path) -> Path:
    """Write `model` as an ONNX graph with dynamic batch and length axes."""
    if importlib.util.find_spec("onnx") is None:
        raise AsrError("ONNX export needs the onnx package: pip install 'asr[train]'")
    model = with_conv_spectrograms(model).eval()
    axes = {"waves": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "frames"}, "out_lengths": {0: "batch"}}
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated, but torch 2.14's dynamo
        warnings.simplefilter("ignore")  # exporter took minutes here and its graph failed in onnxruntime
        torch.onnx.export(model, example_inputs(model), str(out), input_names=INPUT_NAMES,
                          output_names=OUTPUT_NAMES, dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
    return out


def export_stream_onnx(model: DeepSpeech2, out: Path) -> Path:
    """Write a streaming model's step (asr.core.streaming.StreamingStep) as an ONNX graph: a window of samples, its
    position and the state in, log-probs and the state out, the window's length dynamic."""
    step = StreamingStep(with_conv_spectrograms(model).eval())
    first = step.geometry.step_frames * 3 - step.geometry.left_frames  # a window of 4 steps from step 3
    inputs = (torch.randn(1, step.geometry.window_samples(4)) * 0.1, torch.tensor(first), torch.tensor(1 << 40),
              *step.initial_state())
    axes = {"waves": {1: "samples"}, "log_probs": {1: "steps"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(step, inputs, str(out), input_names=STEP_INPUT_NAMES, output_names=STEP_OUTPUT_NAMES,
                          dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
    return out


def store_half(path: Path) -> Path:
    """Rewrite the ONNX graph in `path` with each float32 initializer whose values float16 holds exactly (all the
    weights of a bundle saved as float16, as the shipped model is) stored as float16 and cast back to float32 by a
    Cast node: half the file, the same numbers (onnxruntime folds the casts when it loads the graph)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = (model := onnx.load(str(path))).graph
    casts, kept = [], []
    for init in graph.initializer:
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if init.data_type != TensorProto.FLOAT or values.size < HALF_MIN_VALUES or not np.array_equal(half, values):
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(half, init.name + "_fp16"))
        casts.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=TensorProto.FLOAT))
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    graph.ClearField("node")
    graph.node.extend(nodes)
    onnx.save(model, str(path))
    return path


def write_onnx(export_graph, model: DeepSpeech2, out: Path, quantize: str | None) -> Path:
    """`export_graph(model, path)` written to `out`, int8-quantized if asked, float16-stored where exact."""
    if not quantize:
        return store_half(export_graph(model, out))
    with tempfile.TemporaryDirectory() as tmp:
        return store_half(quantize_onnx(export_graph(model, Path(tmp) / "fp32.onnx"), out))


def export_torchscript(model: nn.Module, out: Path) -> Path:
    """Write `model` (float or int8-quantised) as a traced TorchScript module."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export, still supported
        traced = torch.jit.trace(model.eval(), example_inputs(model), check_trace=False)
    traced.save(str(out))
    return out


def deployment_info(model: DeepSpeech2, tokenizer, fmt: str, quantize: str | None, out: Path) -> dict:
    """What a deployment needs beside the graph to feed it and decode its output."""
    return {"format": fmt, "quantize": quantize, "sample_rate": SAMPLE_RATE,
            "inputs": {"waves": "(B, S) float32, 16 kHz mono, zero-padded", "lengths": "(B,) int64 samples"},
            "outputs": {"log_probs": "(B, T, V) float32 CTC log-probabilities", "out_lengths": "(B,) int64"},
            "min_samples": model.cfg.frontend.n_fft, "blank": BLANK, "vocab": list(tokenizer.vocab),
            "output_step_seconds": model.cfg.output_step_seconds,
            "model_config": config.to_dict(model.cfg), "tokenizer": tokenizer.to_dict(),
            **(stream_info(model, out) if fmt == "onnx" else {})}


def stream_info(model: DeepSpeech2, out: Path) -> dict:
    """What runs a streaming model's step graph (asr.core.streaming; asr.inference.streaming drives it)."""
    if model.cfg.rnn_bidirectional:
        return {}
    return {"stream": {"graph": stream_graph_path(out).name, "geometry": dataclasses.asdict(stream_geometry(model.cfg)),
                       "inputs": {"waves": "(1, W) float32: the samples of frames [first_frame, ...), zeros outside",
                                  "first_frame": "() int64", "total_samples": "() int64: the stream's length once "
                                  "known, else 2**40", "h, c": "(layers, 1, H) float32", "context":
                                  "(1, lookahead, H) float32"},
                       "outputs": {"log_probs": "(1, n, V) float32 of steps [t0 - lookahead, ...)",
                                   "h_out, c_out, context_out": "the state after the window"}}}


def load_source(source: str) -> tuple[DeepSpeech2, object]:
    """(model, tokenizer) from 'default' (the shipped model), a model bundle, or a checkpoint of asr train
    (.ckpt, read through a bundle so that it is checked the same way)."""
    if Path(source).suffix != ".ckpt":
        return load_bundle(model_path(source))
    with tempfile.TemporaryDirectory() as tmp:
        return load_bundle(bundle_from_checkpoint(source, Path(tmp) / "model.safetensors"))


def export_lm(source: str, out) -> list[Path]:
    """Copy the LM beside the source model (MODEL.lm.bin as lm.model_lm finds it, its lexicon and the weights
    `asr tune-lm` found for the model, as lm.model_tuned reads them) beside `out`, named after it, so that the
    export decodes as its source does; the copies ([] when the source has no LM)."""
    model = model_path(source)
    lm = None if model.suffix == ".ckpt" else model_lm(model)
    if lm is None or Path(out).resolve().parent == ASSETS:  # the shipped models share one LM: no copy there
        return []
    target = Path(out).with_suffix(next(suffix for suffix in MODEL_LM_SUFFIXES if lm.name.endswith(suffix)))
    tuned = own_tuned_path(model) if own_tuned_path(model).is_file() else tuned_path(lm)
    copies = []
    for src, dst in [(lm, target), (lexicon_path(lm), lexicon_path(target)), (tuned, tuned_path(target))]:
        if src.is_file() and not (dst.exists() and dst.samefile(src)):
            copies.append(Path(shutil.copyfile(src, dst)))
    return copies


def export(model: DeepSpeech2, tokenizer, out, fmt: str, quantize: str | None = None,
           dtype: torch.dtype = torch.float32) -> Path:
    """Write `model` as a bundle (weights as `dtype`), or as ONNX or TorchScript with its deployment info
    in info_path(out) beside it."""
    if fmt not in EXPORT_FORMATS:
        raise config.ConfigError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    if quantize and fmt == "bundle":
        raise config.ConfigError("--quantize int8 is for --format onnx and torchscript: a bundle keeps float "
                                 "weights (quantize at load time: asr transcribe --quantize int8)")
    out = Path(out)
    model = model.cpu().eval()
    if fmt == "bundle":
        return save_bundle(out, model, tokenizer, dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        write_onnx(export_onnx, model, out, quantize)
        if not model.cfg.rnn_bidirectional:  # a streaming model: its step too
            write_onnx(export_stream_onnx, model, stream_graph_path(out), quantize)
    else:
        export_torchscript(quantize_model(model, quantize), out)
    info = json.dumps(deployment_info(model, tokenizer, fmt, quantize, out), indent=1)
    info_path(out).write_text(info + "\n", encoding="utf-8")
    return out
