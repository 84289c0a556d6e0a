"""Checks on the paths a user names, before anything heavy is loaded.

Imports no torch or numpy, so the CLI can refuse a missing or unusable file at once.
"""

import glob
import os
import stat
from pathlib import Path

from asr.core.errors import AsrError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")  # what soundfile reads and writes
MODEL_EXTENSIONS = (".safetensors", ".onnx")  # what --model runs
ASSETS = Path(__file__).resolve().parent.parent / "assets"  # shipped with the package
DEFAULT_MODEL = ASSETS / "default.safetensors"  # the default model's bundle: the source for fine-tuning and export
DEFAULT_ONNX = ASSETS / "default.onnx"  # the same network exported, which asr transcribe and serve run
SHIPPED = ("default", "streaming")  # the models shipped with the package, by name: ASSETS/NAME.safetensors, .onnx
SPECIAL_FILES = {stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISCHR: "a character device",
                 stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}


class AudioError(AsrError):
    """An audio file that is missing, empty, corrupt or not audio at all."""

    def __init__(self, path, cause: str):
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.cause = cause


class BundleError(AsrError, ValueError):
    """A model file that is not a bundle of asr, or a damaged one."""


def check_audio_file(path) -> None:
    """Raise AudioError unless `path` names an existing, non-empty regular file that this user may read, and, if
    it is named .mp3, one that starts as an MP3 does."""
    if not os.path.exists(path):
        raise AudioError(str(path), missing(path))
    if os.path.isdir(path):
        raise AudioError(str(path), "is a directory, not an audio file" if any(audio_in(path)) else
                         f"is a directory with no audio files in it (none named {', '.join(AUDIO_EXTENSIONS)}, at any "
                         "depth)")
    if kind := special_file(path):
        raise AudioError(str(path), f"is {kind}, not a regular file; asr reads audio files, or audio on standard "
                                    "input given as - (cat FILE | asr transcribe -)")
    if os.path.getsize(path) == 0:
        raise AudioError(str(path), "is an empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(str(path), "permission denied: this user may not read the file (check its permissions)")
    if str(path).lower().endswith(".mp3") and not _starts_as_mp3(path):
        raise AudioError(str(path), "not a readable audio file (named .mp3, but it starts with neither an ID3 tag "
                                    "nor an MPEG audio frame); if it is damaged, re-export or remove it")


def check_model_file(path) -> None:
    """Raise BundleError unless `path` names an existing file (whether it holds a model is read when it loads)."""
    if not os.path.exists(path):
        raise BundleError(f"{path}: {missing(path).replace('no such file', 'no such model file')}")
    if os.path.isdir(path):
        inside = sorted(str(p) for ext in MODEL_EXTENSIONS for p in Path(path).glob(f"*{ext}"))
        raise BundleError(f"{path}: is a directory, not a model file; give the model file "
                          + (f"inside it (e.g. {inside[0]})" if inside else "(.safetensors, or .onnx with its "
                                                                             ".onnx.json beside it)"))
    if kind := special_file(path):
        raise BundleError(f"{path}: is {kind}, not a model file")


def missing(path) -> str:
    """Why `path`, which does not exist, is missing: a broken link, a pattern matching nothing, or no file."""
    if os.path.islink(path):
        return f"a symbolic link to {os.readlink(path)}, which does not exist"
    if glob.has_magic(str(path)):
        return "no file matches this pattern (check it; quote it so that asr, not the shell, expands it)"
    return "no such file (check the path)"


def special_file(path) -> str | None:
    """What `path` is when it is a FIFO, a device or a socket (which report a size of 0 bytes); else None."""
    mode = os.stat(path).st_mode
    return next((kind for test, kind in SPECIAL_FILES.items() if test(mode)), None)


def _starts_as_mp3(path) -> bool:
    """An ID3v2 tag or an MPEG audio frame's sync bits at the start. libsndfile hands a file named .mp3 to
    mpg123 whatever it holds, and mpg123 prints notes to stderr while it searches other bytes for a frame."""
    with open(path, "rb") as f:
        head = f.read(3)
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def audio_in(folder) -> list[Path]:
    """The files named like audio (by extension) under `folder`, recursively, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)


def shipped_name(name) -> str | None:
    """The shipped model a --model value names (None: "default"), or None for a path."""
    name = "default" if name is None else str(name)
    return name if name in SHIPPED else None


def model_path(name) -> Path:
    """The file a model is named by: None, "default" or "streaming" a model shipped with the package (its bundle),
    anything else a path."""
    if (shipped := shipped_name(name)) is None:
        return Path(name)
    path = ASSETS / f"{shipped}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"no {shipped} model is installed with this package; pass a model bundle "
                                "(--model FILE, made by `asr train` or `asr export`)")
    return path
