"""Reading, resampling and writing audio.

Every reader returns a float32 mono waveform (S,) at SAMPLE_RATE and raises AudioError, naming the
file and the cause, for anything that is not usable audio.
"""

import io
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from asr.core.paths import AUDIO_EXTENSIONS, AudioError, check_audio_file

SAMPLE_RATE = 16000  # Hz, the rate of every waveform inside asr
HEADER_READ_THREADS = 16  # header reads wait on the disk, not the CPU
BLOCK_VALUES = 1 << 20  # samples x channels decoded at a time (4 MB of float32), whatever the rate and channels
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4_000, 384_000  # Hz: telephone speech has 8 kHz, studio masters up to 384 kHz
MAX_CHANNELS = 32  # third-order ambisonics has 16
BUDGET_VALUES_PER_SECOND = 48_000 * 2  # a limit of N s of audio also caps decoding at N s of 48 kHz stereo
UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's frame count for a file whose header gives no length (written to a pipe)


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


class AudioLimitError(AudioError):
    """Audio over the limit a reader was given: longer, or with more samples x channels to decode, than allowed."""


class Resampler:
    """A signal resampled block by block as soxr.resample resamples it whole (soxr's streaming resampler, "HQ"
    quality): each block gives the output its input determines, `flush` the rest."""

    def __init__(self, orig_rate: int, new_rate: int):
        self.stream = soxr.ResampleStream(orig_rate, new_rate, 1, dtype="float32", quality="HQ")
        self.same = orig_rate == new_rate

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """The output (S_o,) that the input so far, ending with block (S_b,) float32, determines."""
        if self.same:
            return block
        return self.stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32))

    def flush(self) -> np.ndarray:
        """The rest of the output (S_o,), the input ended: as many samples in all as resampling it whole gives."""
        if self.same:
            return np.zeros(0, dtype=np.float32)
        return self.stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """A whole waveform (S,) float32 resampled from orig_rate to new_rate (S * new_rate / orig_rate,), as Resampler
    gives it block by block."""
    if orig_rate == new_rate:
        return wave
    return soxr.resample(np.ascontiguousarray(wave, dtype=np.float32), orig_rate, new_rate, quality="HQ")


class _SoundFile(sf.SoundFile):
    """soundfile's SoundFile, which seeks after each read when the file is seekable; libsndfile can read a file
    whose header gives no length (a FLAC written to a pipe) to its end, but not seek in it."""

    def seekable(self) -> bool:
        return self.frames != UNKNOWN_FRAMES and super().seekable()


def open_audio(source: str | os.PathLike | BinaryIO) -> sf.SoundFile:
    """A path or a binary file object opened for reading; a pipe such as stdin is read into memory first."""
    if isinstance(source, (str, os.PathLike)):
        check_audio_file(source)
        return _SoundFile(str(source))
    return _SoundFile(source if source.seekable() else io.BytesIO(source.read()))


def read_blocks(f: sf.SoundFile, frames: int) -> Iterator[np.ndarray]:
    """The blocks (S_b, C) of `frames` frames (the last one shorter) of an open file, to its end."""
    while len(block := f.read(frames, dtype="float32", always_2d=True)):
        yield block


def check_format(name: str, f: sf.SoundFile, max_seconds: float) -> None:
    """AudioError for a sample rate or a channel count asr does not read, or no samples; AudioLimitError for audio
    over `max_seconds` (see check_budget) by the header's length, if it gives one."""
    if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(name, f"a sample rate of {f.samplerate} Hz, where asr reads {MIN_SAMPLE_RATE} to "
                               f"{MAX_SAMPLE_RATE} Hz; resample it (sox IN OUT rate 16k)")
    if f.channels > MAX_CHANNELS:
        raise AudioError(name, f"{f.channels} channels, where asr reads at most {MAX_CHANNELS}; mix them down "
                               "(sox IN OUT remix -)")
    if f.frames == 0:
        raise AudioError(name, "contains no audio samples")
    if f.frames != UNKNOWN_FRAMES:
        check_budget(name, f.frames, f, max_seconds)


def check_budget(name: str, frames: int, f: sf.SoundFile, max_seconds: float, so_far: bool = False) -> None:
    """AudioLimitError if `frames` frames of `f` (`so_far`: at least) last over `max_seconds`, or hold more samples x
    channels than max_seconds of 48 kHz stereo: many channels at a high rate decode to gigabytes in a few minutes."""
    at_least = "at least " if so_far else ""
    if frames / f.samplerate > max_seconds:
        raise AudioLimitError(name, f"{at_least}{frames / f.samplerate:.0f} s of audio, over the limit of "
                                    f"{max_seconds:g} s")
    if frames * f.channels > max_seconds * BUDGET_VALUES_PER_SECOND:
        raise AudioLimitError(name, f"{at_least}{frames / f.samplerate:.0f} s of {f.channels} channels at "
                                    f"{f.samplerate} Hz: {frames * f.channels / 1e6:.1f} M samples to decode, over the "
                                    f"limit of {max_seconds * BUDGET_VALUES_PER_SECOND / 1e6:.1f} M ({max_seconds:g} s "
                                    "of 48 kHz stereo)")


def stream_audio(source: str | os.PathLike | BinaryIO, sample_rate: int = SAMPLE_RATE, max_seconds: float = math.inf,
                 block_values: int = BLOCK_VALUES) -> Iterator[tuple[np.ndarray, int]]:
    """Read a path or a binary file object a block at a time: (mono float32 block (S_b,), sample_rate) pairs.

    At most `block_values` samples x channels are decoded at a time, and each block is averaged to mono and
    resampled (Resampler) before the next is read: memory holds one block, whatever the file's rate, channels
    and length. A file whose header gives no length is read to its end. Raises AudioError, naming the file, for
    anything unusable (check_format), and AudioLimitError for audio over `max_seconds` (check_budget): from the
    header before decoding, else as soon as the decoded samples pass the limit.
    """
    name = source_name(source)
    try:
        with open_audio(source) as f:
            check_format(name, f, max_seconds)
            resampler, frames = Resampler(f.samplerate, sample_rate), 0
            for block in read_blocks(f, max(1, block_values // f.channels)):  # (S_b, C)
                frames += len(block)
                check_budget(name, frames, f, max_seconds, so_far=True)
                if not np.isfinite(block).all():
                    raise AudioError(name, "contains NaN or infinite samples; re-export the audio")
                yield resampler(block.mean(axis=1)), sample_rate
            if not frames:
                raise AudioError(name, "contains no audio samples")
            yield resampler.flush(), sample_rate
    except AudioError:
        raise
    except Exception as err:  # soundfile raises several types for bad content, also in the middle of a file
        raise _unreadable(name, err) from err


def load_audio(source: str | os.PathLike | BinaryIO, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file path or binary file object as a float32 mono waveform (S,) at `sample_rate`: the blocks of
    stream_audio joined. Channels are averaged; other rates are resampled. Raises AudioError for anything unusable.
    """
    return np.concatenate([block for block, _ in stream_audio(source, sample_rate)])


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, read from its header; a file whose header gives no length is decoded
    to count its samples."""
    check_audio_file(path)
    try:
        with _SoundFile(str(path)) as f:
            frames = f.frames if f.seekable() else sum(map(len, read_blocks(f, BLOCK_VALUES // f.channels)))
            rate = f.samplerate
    except Exception as err:
        raise _unreadable(str(path), err) from err
    if frames == 0:
        raise AudioError(str(path), "contains no audio samples")
    return frames / rate


def write_audio(path: str | os.PathLike, wave, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono waveform (S,), a numpy array or anything np.asarray takes (a CPU torch tensor), to `path`; the
    format follows the extension (16-bit PCM for wav/flac)."""
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"{path}: write_audio takes a mono waveform of shape (S,), got shape {tuple(wave.shape)}")
    suffix = Path(path).suffix.lower()
    fmt = dict(format="OGG", subtype="OPUS") if suffix == ".opus" else {}  # soundfile can't infer .opus
    sf.write(str(path), wave.astype(np.float32), sample_rate, **fmt)
