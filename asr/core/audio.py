"""Reading, resampling and writing audio.

Every reader returns a float32 mono waveform (S,) at SAMPLE_RATE and raises AudioError, naming the
file and the cause, for anything that is not usable audio.
"""

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio

from asr.core.paths import AUDIO_EXTENSIONS, AudioError, check_audio_file

SAMPLE_RATE = 16000  # Hz, the rate of every waveform inside asr
HEADER_READ_THREADS = 16  # header reads wait on the disk, not the CPU


def source_name(source) -> str:
    """The name to show for a path or a file-like object in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stdin>"


def _unreadable(name: str, err: Exception) -> AudioError:
    """Turn a soundfile error into an AudioError that names the file."""
    detail = (getattr(err, "error_string", None) or str(err)).rstrip(".")
    return AudioError(name, f"not a readable audio file ({detail}); if it is damaged, re-export or remove it, "
                            f"else convert it to one of {', '.join(AUDIO_EXTENSIONS)}")


def load_audio(source: str | os.PathLike | BinaryIO, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read a file path or binary file object as a float32 mono waveform (S,) at `sample_rate`.

    Channels are averaged; other rates are resampled. Raises AudioError for anything unusable.
    """
    name = source_name(source)
    if isinstance(source, (str, os.PathLike)):
        check_audio_file(source)
    elif not source.seekable():  # a pipe such as stdin: soundfile needs to seek
        source = io.BytesIO(source.read())
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)  # (S, C)
    except Exception as err:  # soundfile raises several types for bad content
        raise _unreadable(name, err) from err
    if data.size == 0:
        raise AudioError(name, "contains no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(name, "contains NaN or infinite samples; re-export the audio")
    wave = torch.from_numpy(data.mean(axis=1))  # (S,)
    if rate != sample_rate:
        wave = torchaudio.functional.resample(wave, rate, sample_rate)
    return wave


def stream_audio(path: str | os.PathLike, block_seconds: float = 10.0) -> Iterator[tuple[np.ndarray, int]]:
    """Read a file a block at a time: (mono float32 block (S_b,), the file's sample rate) pairs.

    Only one block is in memory at a time, so a file of any length can be read. Channels are averaged;
    nothing is resampled. Raises AudioError, naming the file, as load_audio does.
    """
    check_audio_file(path)
    try:
        with sf.SoundFile(str(path)) as f:
            if f.frames == 0:
                raise AudioError(str(path), "contains no audio samples")
            for block in f.blocks(blocksize=max(1, int(block_seconds * f.samplerate)), dtype="float32",
                                  always_2d=True):  # (S_b, C)
                if not np.isfinite(block).all():
                    raise AudioError(str(path), "contains NaN or infinite samples; re-export the audio")
                yield block.mean(axis=1), f.samplerate
    except AudioError:
        raise
    except Exception as err:  # soundfile raises several types for bad content, also in the middle of a file
        raise _unreadable(str(path), err) from err


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, read from its header only."""
    check_audio_file(path)
    try:
        info = sf.info(str(path))
    except Exception as err:
        raise _unreadable(str(path), err) from err
    if info.frames == 0:
        raise AudioError(str(path), "contains no audio samples")
    return info.frames / info.samplerate


def write_audio(path: str | os.PathLike, wave: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono waveform (S,) to `path`; the format follows the extension (16-bit PCM for wav/flac)."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    if wave.ndim != 1:
        raise ValueError(f"{path}: write_audio takes a mono waveform of shape (S,), got shape {tuple(wave.shape)}")
    suffix = Path(path).suffix.lower()
    fmt = dict(format="OGG", subtype="OPUS") if suffix == ".opus" else {}  # soundfile can't infer .opus
    sf.write(str(path), wave.astype(np.float32), sample_rate, **fmt)
