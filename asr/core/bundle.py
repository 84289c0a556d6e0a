"""Model bundles: one safetensors file holding the weights, the model config (front-end included)
and the tokenizer, the last two as JSON in the file's metadata. Loading one never unpickles anything.
"""

import json
import math
import pickle
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save

from asr.core import config
from asr.core.model import DeepSpeech2
from asr.core.model_config import FrontendConfig, ModelConfig
from asr.core.paths import BundleError, check_model_file
from asr.core.text import Tokenizer, tokenizer_from_dict

FORMAT = "asr-bundle"
VERSION = "1"
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
    """(model in eval mode, tokenizer) from a bundle file; BundleError if it is not a valid one.

    Nothing is built from what the metadata claims before it is checked against the tensors' shapes in the
    file's header, so loading costs memory in proportion to the file, whatever its metadata asks for.
    """
    path = Path(path)
    cfg, tokenizer, shapes = bundle_header(path)
    check_shapes(path, cfg, shapes)
    model = DeepSpeech2(cfg)
    state = {name: t.float() if t.is_floating_point() else t for name, t in read_tensors(path).items()}
    try:
        model.load_state_dict(state, strict=True)  # names and shapes are checked: only the dtypes may differ
    except RuntimeError as err:
        raise mismatch(path, str(err)) from None
    return model.to(device).eval(), tokenizer


def bundle_header(path: Path) -> tuple[ModelConfig, Tokenizer, dict[str, tuple[int, ...]]]:
    """(model config, tokenizer, tensor name -> shape) of a bundle, from its header alone (no tensor is read);
    BundleError if it is not a bundle."""
    check_model_file(path)
    metadata, shapes = read_header(path)
    if metadata.get("format") != FORMAT:
        raise BundleError(f"{path}: a safetensors file, but not an asr model bundle (no '{FORMAT}' metadata)")
    cfg, tokenizer = read_metadata(path, metadata)
    if cfg.vocab_size != len(tokenizer):
        raise BundleError(f"{path}: the model predicts {cfg.vocab_size} tokens but the tokenizer has {len(tokenizer)}")
    return cfg, tokenizer, shapes


def read_header(path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(metadata, tensor name -> shape) from a safetensors file's header, reading no tensor."""
    with safetensors_file(path) as f:
        return f.metadata() or {}, {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safetensors_file(path) as f:
        return {name: f.get_tensor(name) for name in f.keys()}


@contextmanager
def safetensors_file(path: Path):
    try:
        with safe_open(str(path), framework="pt") as f:
            yield f
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


def read_metadata(path: Path, metadata: dict[str, str]) -> tuple[ModelConfig, Tokenizer]:
    """The model config and the tokenizer, JSON in the metadata; BundleError for any other JSON or none."""
    try:
        cfg = config.from_dict(ModelConfig, json.loads(metadata["model_config"]))
        return cfg, tokenizer_from_dict(json.loads(metadata["tokenizer"]))
    except KeyError as err:
        raise BundleError(f"{path}: damaged bundle metadata: no {err}") from None
    except (ValueError, RecursionError) as err:  # RecursionError: JSON nested too deeply to read
        raise BundleError(f"{path}: damaged bundle metadata: {err}") from None


def check_shapes(path: Path, cfg: ModelConfig, shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse, naming the first difference, a config whose weights would not have exactly the shapes of the
    file's tensors. Nothing the file does not bound is allocated: the layer counts and the front-end's size
    (its filterbank is computed when built) are compared with the file's first, then the network is built on
    the meta device, which holds shapes and no values."""
    layers = {"rnn_layers": (cfg.rnn_layers, "rnns."), "conv layers": (len(cfg.conv_channels), "convs.")}
    for what, (wanted, prefix) in layers.items():
        held = len({name.split(".")[1] for name in shapes if name.startswith(prefix)})
        if wanted != held:
            raise mismatch(path, f"the config asks for {wanted} {what}, the weights hold {held}")
    wanted = frontend_size(cfg.frontend)
    held = sum(math.prod(shape) for name, shape in shapes.items() if name.startswith("frontend."))
    if wanted > held:
        raise mismatch(path, f"the config's front-end ({cfg.frontend.kind}, n_mels {cfg.frontend.n_mels}, win_ms "
                             f"{cfg.frontend.win_ms:g}) needs {wanted} values, the weights hold {held}")
    try:
        with torch.device("meta"):
            expected = {name: tuple(t.shape) for name, t in DeepSpeech2(cfg).state_dict().items()}
    except (RuntimeError, TypeError) as err:  # sizes past what torch can represent
        raise mismatch(path, f"the config describes no model torch can build ({str(err).splitlines()[0]})") from None
    for name in sorted(expected.keys() | shapes.keys()):
        if name not in shapes:
            raise mismatch(path, f"missing tensor {name}")
        if name not in expected:
            raise mismatch(path, f"unexpected tensor {name}")
        if expected[name] != shapes[name]:
            raise mismatch(path, f"size mismatch for {name}: the config makes it {list(expected[name])}, the "
                                 f"file holds {list(shapes[name])}")


def frontend_size(cfg: FrontendConfig) -> int:
    """Values in the front-end's tensors (window, and mel filterbank and DCT matrix where it has them)."""
    mel = 0 if cfg.kind == "linear" else (cfg.n_fft // 2 + 1) * cfg.n_mels
    return cfg.win_length + mel + (cfg.n_mels * cfg.n_mfcc if cfg.kind == "mfcc" else 0)


def mismatch(path: Path, what: str) -> BundleError:
    return BundleError(f"{path}: the weights do not match the model config: {what}")


def bundle_from_checkpoint(ckpt_path, out_path, dtype: torch.dtype = torch.float32) -> Path:
    """Export the model of a Lightning checkpoint of `asr train` as a bundle: the network is rebuilt from the
    checkpoint's config and weights alone (no LightningModule, so no Lightning)."""
    ckpt = load_checkpoint(ckpt_path)
    try:  # the config against the weights' shapes first, as for a bundle
        cfg = config.from_dict(ModelConfig, ckpt["hyper_parameters"]["experiment"]["model"])
        tokenizer = tokenizer_from_dict(ckpt["hyper_parameters"]["tokenizer"])
        weights = {name.removeprefix("model."): t for name, t in ckpt["state_dict"].items()
                   if name.startswith("model.")}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise foreign(ckpt_path, err) from None
    check_shapes(Path(ckpt_path), cfg, {name: tuple(t.shape) for name, t in weights.items()})
    model = DeepSpeech2(cfg)
    try:
        model.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise foreign(ckpt_path, err) from None
    return save_bundle(out_path, model, tokenizer, dtype)


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
