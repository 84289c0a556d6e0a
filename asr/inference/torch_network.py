"""The torch network behind a Recognizer: a DeepSpeech2 from a model bundle, on any device torch has, optionally with
int8 weights. Imported only when a bundle or checkpoint is run (asr.inference.transcribe.load_model), so that the
ONNX path (asr.inference.network) loads no torch."""

import numpy as np
import torch

from asr.core.bundle import load_bundle
from asr.core.config import ConfigError
from asr.core.streaming import StreamingStep
from asr.inference.network import StepBase, not_streaming
from asr.inference.quantize import quantize_model


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def available_devices() -> list[str]:
    """The devices torch can run on here: cpu, cuda:0, ..., mps."""
    return (["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
            + (["mps"] if torch.backends.mps.is_available() else []))


def check_device(name: str) -> torch.device:
    """torch.device(name) if this machine has that device; else ConfigError naming the ones it has."""
    here = f"devices here: {', '.join(available_devices())}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: not a device name ({here})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no CUDA device is available (no GPU, or a CPU-only torch); {here}")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: there is no CUDA device {device.index}; {here}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: MPS is not available; {here}")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {name!r}: asr runs on cpu, cuda or mps; {here}")
    return device


class TorchNetwork:
    """A DeepSpeech2 (float, or int8 by quantize_model) on a torch device, called as an OnnxNetwork is."""

    def __init__(self, model, tokenizer, device: str | torch.device = "cpu"):
        self.model, self.tokenizer, self.cfg = model, tokenizer, model.cfg
        self.torch_device = torch.device(device)
        self.device = str(self.torch_device)
        self.step = None  # the streaming step, made when asked for

    @torch.inference_mode()
    def __call__(self, waves: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """waves (B, S) float32, lengths (B,) int64 -> log_probs (B, T, V) float32, out_lengths (B,) int64"""
        batch = torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32)).to(self.torch_device)  # (B, S)
        log_probs, out_lengths = self.model(batch, torch.from_numpy(lengths).to(self.torch_device))
        return log_probs.float().cpu().numpy(), out_lengths.cpu().numpy()

    def streaming(self) -> "TorchStep":
        if self.step is None:
            if error := not_streaming(self.cfg, "this model"):
                raise error
            self.step = TorchStep(self.model, self.tokenizer, self.torch_device)
        return self.step


class TorchStep(StepBase):
    """A streaming model's step (asr.core.streaming.StreamingStep) on a torch device, called as an OnnxStep is."""

    def __init__(self, model, tokenizer, device: torch.device):
        super().__init__(model.cfg, tokenizer)
        self.step, self.torch_device = StreamingStep(model), device

    @torch.inference_mode()
    def __call__(self, waves: np.ndarray, first_frame: int, total_samples: int,
                 state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        inputs = [torch.from_numpy(np.ascontiguousarray(x)).to(self.torch_device) for x in (waves, *state)]
        positions = (torch.tensor(n, device=self.torch_device) for n in (first_frame, total_samples))
        log_probs, *state = self.step(inputs[0], *positions, *inputs[1:])
        return log_probs[0].cpu().numpy(), [s.cpu().numpy() for s in state]


def load_torch(path, device: str | None, quantize: str | None, threads: int | None) -> TorchNetwork:
    """The bundle in `path` on `device` (default: cuda if there is one), int8 with quantize="int8" (CPU only)."""
    if threads:
        torch.set_num_threads(threads)
    device = check_device(device or ("cpu" if quantize else default_device()))  # int8 runs on the CPU only
    model, tokenizer = load_bundle(path, device)
    return TorchNetwork(quantize_model(model, quantize), tokenizer, device)
