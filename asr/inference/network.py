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
from asr.core.model_config import ModelConfig, StreamGeometry, output_length, stream_geometry
from asr.core.paths import BundleError
from asr.core.text import Tokenizer, tokenizer_from_dict

INPUT_NAMES, OUTPUT_NAMES = ["waves", "lengths"], ["log_probs", "out_lengths"]
STATE_NAMES = ["h", "c", "context"]  # a streaming step's state (asr.core.streaming.StreamingStep's last inputs)
STEP_INPUT_NAMES, STEP_OUTPUT_NAMES = ["waves", "first_frame", "total_samples", *STATE_NAMES], \
    ["log_probs", *(f"{name}_out" for name in STATE_NAMES)]


class Network(Protocol):
    cfg: ModelConfig
    tokenizer: Tokenizer
    device: str  # where it runs: "cpu", "cuda:0", ...

    def __call__(self, waves: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """waves (B, S) float32, lengths (B,) int64 -> log_probs (B, T, V) float32, out_lengths (B,) int64"""

    def streaming(self) -> "StepNetwork":
        """The network's streaming step (asr.core.streaming); ConfigError for a model that is not a streaming one."""


class StepNetwork(Protocol):
    """A streaming model's step over one window of samples (asr.core.streaming.StreamingStep), as numpy."""
    cfg: ModelConfig
    tokenizer: Tokenizer
    geometry: StreamGeometry

    def initial_state(self) -> list[np.ndarray]:
        """h, c (layers, 1, H) and context (1, lookahead, H) before a stream's first window."""

    def __call__(self, waves: np.ndarray, first_frame: int, total_samples: int,
                 state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """waves (1, W) float32 and the state -> log_probs (n, V) float32 and the state after them."""

    def output_length(self, samples: int) -> int:
        """Output steps of a stream of `samples` samples."""


class StepBase:
    """What the step networks share: the geometry and the initial state, from the model's config."""

    def __init__(self, cfg: ModelConfig, tokenizer: Tokenizer):
        self.cfg, self.tokenizer, self.geometry = cfg, tokenizer, stream_geometry(cfg)

    def initial_state(self) -> list[np.ndarray]:
        hidden = np.zeros((self.cfg.rnn_layers, 1, self.cfg.rnn_hidden), dtype=np.float32)
        return [hidden, hidden.copy(), np.zeros((1, self.cfg.lookahead, self.cfg.rnn_output_size), dtype=np.float32)]

    def output_length(self, samples: int) -> int:
        return output_length(self.cfg, samples)


def not_streaming(cfg: ModelConfig, path) -> ConfigError | None:
    """The error for streaming with a model that cannot stream, else None."""
    if cfg.rnn_bidirectional:
        reason = "its bidirectional LSTMs read each utterance to its end before giving any output"
    elif cfg.frontend.normalize is True:
        reason = "it normalises its features over each whole utterance (frontend.normalize: true, not global)"
    else:
        return None
    return ConfigError(f"{path}: not a streaming model: {reason}; stream with the shipped streaming model (--model "
                       "streaming) or one trained from conf/streaming.yaml")


def stream_graph_path(model: Path) -> Path:
    """model.onnx -> model.stream.onnx: the streaming step that `asr export` writes beside a streaming model."""
    return model.with_suffix(".stream.onnx")


class OnnxStep(StepBase):
    """A streaming model's step graph (model.stream.onnx) run by onnxruntime."""

    def __init__(self, path: Path, cfg: ModelConfig, tokenizer: Tokenizer, options):
        super().__init__(cfg, tokenizer)
        self.session = onnx_session(path, options, (STEP_INPUT_NAMES, STEP_OUTPUT_NAMES))

    def __call__(self, waves: np.ndarray, first_frame: int, total_samples: int,
                 state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feeds = {"waves": waves.astype(np.float32, copy=False), "first_frame": np.array(first_frame, dtype=np.int64),
                 "total_samples": np.array(total_samples, dtype=np.int64)} | dict(zip(STATE_NAMES, state))
        log_probs, *state = self.session.run(None, feeds)
        return log_probs[0], state


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
        self.path, self.options, self.step = path, options, None  # the streaming step, loaded when asked for
        self.session = onnx_session(path, options, (INPUT_NAMES, OUTPUT_NAMES))

    def __call__(self, waves: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """waves (B, S) float32, lengths (B,) int64 -> log_probs (B, T, V) float32, out_lengths (B,) int64"""
        short = max(0, self.cfg.frontend.n_fft - waves.shape[1])  # the graph needs one analysis window
        waves = np.pad(waves, ((0, 0), (0, short))).astype(np.float32, copy=False)
        log_probs, out_lengths = self.session.run(None, {"waves": waves, "lengths": lengths.astype(np.int64)})
        return log_probs, out_lengths

    def streaming(self) -> OnnxStep:
        """The step graph beside the model (model.stream.onnx), loaded once; streams share it (they hold their
        state)."""
        if self.step is None:
            if error := not_streaming(self.cfg, self.path):
                raise error
            graph = stream_graph_path(self.path)
            if not graph.is_file():
                raise BundleError(f"{graph}: no such file; a streaming model's ONNX export has its streaming step "
                                  f"beside it: export it again (`asr export SOURCE {self.path.name} --format onnx`)")
            self.step = OnnxStep(graph, self.cfg, self.tokenizer, self.options)
        return self.step


def default_threads() -> int:
    """The threads onnxruntime runs on unless told: OMP_NUM_THREADS, as torch reads it, else 0 (one per core)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else 0


def onnx_session(path: Path, options, names: tuple[list[str], list[str]]):
    """An onnxruntime session of the graph in `path`; BundleError if it is no ONNX graph, or not one that asr
    exported (other inputs and outputs than `names`)."""
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except (ort_errors.InvalidProtobuf, ort_errors.InvalidArgument, ort_errors.InvalidGraph, ort_errors.Fail,
            ort_errors.NotImplemented) as err:  # onnxruntime's errors for a file that holds no usable graph
        detail = str(err).split("failed:", 1)[-1].strip().rstrip(".")
        raise BundleError(f"{path}: not a readable ONNX model ({detail}); export it again with `asr export "
                          f"SOURCE {path.name} --format onnx`") from None
    held = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if held != tuple(names):
        raise BundleError(f"{path}: an ONNX graph, but not one `asr export` wrote (inputs {held[0]}, outputs "
                          f"{held[1]}; asr's take {names[0]} and give {names[1]})")
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
