"""The network behind a Recognizer, and the one that needs no torch: an ONNX export run by onnxruntime.

A network takes a zero-padded batch of 16 kHz waveforms (B, S) float32 with their lengths (B,) int64 and gives
CTC log-probabilities (B, T, V) float32 with output lengths (B,), as numpy arrays, and carries the model's config
(`cfg`, for the seconds per output step) and its tokenizer. Two kinds: OnnxNetwork here (numpy and onnxruntime
only) and asr.inference.torch_network.TorchNetwork (a DeepSpeech2 from a bundle or checkpoint, imported only for
those). An ONNX export's JSON beside it (`model.onnx.json`) holds its config and tokenizer, read without torch.
"""

import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from asr.core import config
from asr.core.config import ConfigError
from asr.core.model_config import ModelConfig
from asr.core.paths import BundleError
from asr.core.text import Tokenizer, tokenizer_from_dict

INPUT_NAMES, OUTPUT_NAMES = ["waves", "lengths"], ["log_probs", "out_lengths"]


class Network(Protocol):
    cfg: ModelConfig
    tokenizer: Tokenizer
    device: str  # where it runs: "cpu", "cuda:0", ...

    def __call__(self, waves: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """waves (B, S) float32, lengths (B,) int64 -> log_probs (B, T, V) float32, out_lengths (B,) int64"""


def info_path(out: Path) -> Path:
    """model.onnx -> model.onnx.json: the deployment info of an exported model."""
    return out.with_name(out.name + ".json")


def read_info(model: Path) -> dict | None:
    """The deployment info beside an exported model (model.onnx -> model.onnx.json), None if it has none;
    BundleError if it is there but damaged."""
    path = info_path(Path(model))
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        raise damaged_info(path, err) from None
    if not isinstance(info, dict):
        raise damaged_info(path, f"a JSON {type(info).__name__}, not an object")
    return info


def damaged_info(path: Path, err) -> BundleError:
    return BundleError(f"{path}: damaged deployment info ({err}); export the model again")


def exported_format(path: str | os.PathLike) -> str | None:
    """"onnx" or "torchscript" for a model `asr export` wrote (its JSON beside it says which), else None;
    BundleError if that JSON is damaged."""
    return (read_info(Path(path)) or {}).get("format")


class OnnxNetwork:
    """An ONNX export run by onnxruntime on the CPU; its config and tokenizer come from the JSON beside it."""

    device = "cpu"

    def __init__(self, path, threads: int | None = None):
        import onnxruntime

        path = Path(path)
        info = read_info(path)
        if info is None:
            raise BundleError(f"{info_path(path)}: no such file; asr runs an ONNX model with the JSON that `asr "
                              "export --format onnx` writes beside it")
        try:
            self.cfg = config.from_dict(ModelConfig, info["model_config"])
            self.tokenizer = tokenizer_from_dict(info["tokenizer"])
        except (ValueError, KeyError, TypeError) as err:  # a config or tokenizer of another form
            raise damaged_info(info_path(path), err) from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        # idle threads sleep rather than spin: the beam search (asr serve overlaps it with the network) and other
        # work on the machine need the cores (spinning halved asr serve's throughput on 2 busy cores)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnx_session(path, options)

    def __call__(self, waves: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """waves (B, S) float32, lengths (B,) int64 -> log_probs (B, T, V) float32, out_lengths (B,) int64"""
        short = max(0, self.cfg.frontend.n_fft - waves.shape[1])  # the graph needs one analysis window
        waves = np.pad(waves, ((0, 0), (0, short))).astype(np.float32, copy=False)
        log_probs, out_lengths = self.session.run(None, {"waves": waves, "lengths": lengths.astype(np.int64)})
        return log_probs, out_lengths


def default_threads() -> int:
    """The threads onnxruntime runs on unless told: OMP_NUM_THREADS, as torch reads it, else 0 (one per core)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else 0


def onnx_session(path: Path, options):
    """An onnxruntime session of the graph in `path`; BundleError if it is no ONNX graph, or not one that asr
    exported (other inputs and outputs)."""
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except (ort_errors.InvalidProtobuf, ort_errors.InvalidArgument, ort_errors.InvalidGraph, ort_errors.Fail,
            ort_errors.NotImplemented) as err:  # onnxruntime's errors for a file that holds no usable graph
        detail = str(err).split("failed:", 1)[-1].strip().rstrip(".")
        raise BundleError(f"{path}: not a readable ONNX model ({detail}); export it again with `asr export "
                          f"SOURCE {path.name} --format onnx`") from None
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if names != (INPUT_NAMES, OUTPUT_NAMES):
        raise BundleError(f"{path}: an ONNX graph, but not one `asr export` wrote (inputs {names[0]}, outputs "
                          f"{names[1]}; asr's take {INPUT_NAMES} and give {OUTPUT_NAMES})")
    return session


def load_onnx(path, device: str | None, quantize: str | None, threads: int | None) -> OnnxNetwork:
    """The ONNX export in `path`, run in onnxruntime on the CPU."""
    if quantize:
        raise ConfigError(f"{path}: an ONNX export is quantized when it is exported (`asr export SOURCE OUT.onnx "
                          "--format onnx --quantize int8`), not when it is loaded")
    if device not in (None, "cpu"):
        raise ConfigError(f"{path}: an ONNX export runs on the CPU, in onnxruntime (asked for device {device!r}); "
                          "run its bundle on other devices")
    return OnnxNetwork(path, threads)
