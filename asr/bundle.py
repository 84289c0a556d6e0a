"""Model bundles: one safetensors file holding the weights, the model config (front-end included)
and the tokenizer, the last two as JSON in the file's metadata. Loading one never unpickles anything.
"""

import json
import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save

from . import config
from .model import DeepSpeech2, ModelConfig
from .text import tokenizer_from_dict

FORMAT = "asr-bundle"
VERSION = "1"
DEFAULT_MODEL = Path(__file__).resolve().parent / "assets" / "default.safetensors"  # shipped with the package


class BundleError(ValueError):
    pass


def save_bundle(path, model: DeepSpeech2, tokenizer, dtype: torch.dtype = torch.float32) -> Path:
    """Write `model` and `tokenizer` to one file; floating-point weights are stored as `dtype`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: (t.to(dtype) if t.is_floating_point() else t).detach().cpu().contiguous()
               for name, t in model.state_dict().items()}
    metadata = {"format": FORMAT, "version": VERSION,
                "model_config": json.dumps(config.to_dict(model.cfg)),
                "tokenizer": json.dumps(tokenizer.to_dict())}
    path.write_bytes(sorted_header(save(tensors, metadata=metadata)))
    return path


def sorted_header(data: bytes) -> bytes:
    """A safetensors file with its JSON header's keys sorted, so that equal bundles are equal bytes.

    safetensors writes the metadata in hash order, different in every process (safetensors issue #584).
    """
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # padding: the tensor data stays 8-byte aligned
    return len(header).to_bytes(8, "little") + header + data[8 + size:]


def load_bundle(path, device: str | torch.device = "cpu"):
    """(model in eval mode, tokenizer) from a bundle file; BundleError if it is not a valid one."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such model file")
    metadata, tensors = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise BundleError(f"{path}: a safetensors file, but not an asr model bundle (no '{FORMAT}' metadata)")
    try:
        cfg = config.from_dict(ModelConfig, json.loads(metadata["model_config"]))
        tokenizer = tokenizer_from_dict(json.loads(metadata["tokenizer"]))
    except (KeyError, ValueError) as err:
        raise BundleError(f"{path}: damaged bundle metadata: {err}") from None
    if cfg.vocab_size != len(tokenizer):
        raise BundleError(f"{path}: the model predicts {cfg.vocab_size} tokens but the tokenizer has {len(tokenizer)}")
    model = DeepSpeech2(cfg)
    state = {name: t.float() if t.is_floating_point() else t for name, t in tensors.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BundleError(f"{path}: the weights do not match the model config: {err}") from None
    return model.to(device).eval(), tokenizer


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        what = other_model_file(path) or f"expected a safetensors file: {err}"
        raise BundleError(f"{path}: not a model bundle ({what})") from None


def other_model_file(path: Path) -> str | None:
    """What a model file that is not a bundle is, and how to use it, when it is a TorchScript module, a PyTorch
    checkpoint or an ONNX graph; else None."""
    if zipfile.is_zipfile(path):  # torch.jit.save and torch.save both write zip archives
        names = zipfile.ZipFile(path).namelist()
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return ("a TorchScript module, as `asr export --format torchscript` writes, for torch.jit.load or "
                    "libtorch; asr runs bundles and ONNX exports: give the bundle it was exported from, or "
                    "`asr export SOURCE model.onnx --format onnx`")
        if any(n.endswith("/data.pkl") for n in names):
            return f"a PyTorch checkpoint; make a bundle of it with `asr export {path} model.safetensors`"
    if path.suffix == ".onnx":
        return (f"an ONNX model without the {path.name}.json that `asr export --format onnx` writes beside it, "
                "which asr needs to run it: keep the two together")
    return None


def bundle_from_checkpoint(ckpt_path, out_path, dtype: torch.dtype = torch.float32) -> Path:
    """Export the model of a Lightning checkpoint of `asr train` as a bundle."""
    from .training import ASRModule  # deferred: Lightning is only needed to export

    ckpt = load_checkpoint(ckpt_path)
    try:
        module = ASRModule(**ckpt["hyper_parameters"])
        module.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise foreign(ckpt_path, err) from None
    return save_bundle(out_path, module.model, module.tokenizer, dtype)


def load_checkpoint(path) -> dict:
    """The contents of a Lightning checkpoint, unpickled with weights_only=True: tensors and plain data only."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BundleError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError as err:
        raise refused_pickle(path, err) from None
    except Exception as err:  # torch.load raises many types for foreign files
        raise foreign(path, err) from None
    if not isinstance(ckpt, dict):
        raise BundleError(f"{path}: not a checkpoint of asr train (it holds a {type(ckpt).__name__}, not a dict)")
    return ckpt


def refused_pickle(path, err: pickle.UnpicklingError) -> BundleError:
    """The error for a pickle that torch.load(weights_only=True) refused: it holds more than tensors and plain
    data, and unpickling it could run any code (a crafted file is an attack), so it is never loaded."""
    culprit = re.search(r"GLOBAL (\S+)", str(err))
    if culprit is None:  # not a pickle at all, or one with instructions the safe unpickler does not follow
        return BundleError(f"{path}: not a checkpoint of asr train (not a pickle of tensors and plain data, the "
                           "only kind asr loads)")
    return BundleError(f"{path}: refused: not a checkpoint of asr train; it is a pickle that builds Python objects "
                       f"({culprit.group(1)}), and asr never unpickles those, as that could run code")


def foreign(path, err: Exception) -> BundleError:
    """The error for a file that loaded but is not what `asr train` writes."""
    return BundleError(f"{path}: not a checkpoint of asr train ({type(err).__name__}: {str(err).splitlines()[0]})")
