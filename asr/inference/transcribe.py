"""The Python API behind `asr transcribe`: load a model bundle, turn audio into text."""

import ctypes
import functools
import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asr.core.audio import (
    SAMPLE_RATE,
    AudioError,
    audio_duration,
    load_audio,
    source_name,
    stream_audio,
)
from asr.core.decoding import DecoderConfig, Word, build_decoder, resolve_decoder, word_timestamps
from asr.core.paths import ASSETS, model_path, shipped_name
from asr.inference.chunking import MAX_CHUNK_SECONDS, Chunk, chunks
from asr.inference.network import Network, exported_format, load_onnx
from asr.inference.streaming import EndpointConfig, TranscriptStream

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt's parameter numbers in glibc's malloc.h


# a batch of chunks through the model: their (source index, name, Chunk)s, log-probs (B, T, V) and lengths (B,)
LogProbBatch = tuple[list[tuple[int, str, Chunk]], np.ndarray, np.ndarray]


@dataclass
class Transcript:
    audio_filepath: str
    text: str
    duration: float  # seconds
    words: list[Word] = field(default_factory=list)  # each with start and end seconds and a confidence


class Recognizer:
    """A network (asr.inference.network: an ONNX export, or a torch model) with its decoder, ready to transcribe;
    `path`: the file it was loaded from, whose LM beside it (MODEL.lm.bin) it decodes with unless told otherwise."""

    def __init__(self, network: Network, decoder: DecoderConfig | None = None, path: str | os.PathLike | None = None):
        self.network, self.tokenizer, self.path = network, network.tokenizer, path
        self.set_decoder(decoder)

    def set_decoder(self, request: DecoderConfig | None = None) -> None:
        """Decode from now on as `request` asks, what it leaves open decided for this model by resolve_decoder
        (None: the model's default); a beam search's LM is loaded here."""
        self.decoder_config = resolve_decoder(request, self.path)
        self.decode = build_decoder(self.tokenizer, self.decoder_config)
        log.info("decoding with %s", decoder_summary(self.decoder_config))

    def stream(self, endpoint: EndpointConfig | None = None, min_steps: int = 1) -> TranscriptStream:
        """A live stream for a streaming model: feed it 16 kHz mono chunks of any size, get partial and final
        StreamEvents (asr.inference.streaming); `min_steps`: output steps to wait for before running the network
        (more: fewer, larger windows). ConfigError for a model that cannot stream."""
        return TranscriptStream(self, endpoint, min_steps)

    def log_probs(self, waves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """16 kHz mono waveforms, each (S_i,) float32, run as one padded batch -> log-probs (B, T, V) float32 and
        output lengths (B,)."""
        lengths = np.array([len(w) for w in waves], dtype=np.int64)  # (B,)
        batch = np.zeros((len(waves), lengths.max()), dtype=np.float32)  # (B, S)
        for row, wave in zip(batch, waves):
            row[:len(wave)] = wave
        return self.network(batch, lengths)

    def recognize(self, waves: list[np.ndarray], words: bool = True) -> list[tuple[str, list[Word]]]:
        """Text and timed words (with `words`; else none) for each of a list of 16 kHz mono waveforms (S_i,)."""
        return self.decoded(*self.log_probs(waves), words)

    def decoded(self, log_probs: np.ndarray, lengths: np.ndarray, words: bool) -> list[tuple[str, list[Word]]]:
        """Text and timed words (with `words`; else none) for each of log-probs (B, T, V) with lengths (B,)."""
        step = self.network.cfg.output_step_seconds
        results = []
        for probs, length, ids in zip(log_probs, lengths.tolist(), self.decode(log_probs, lengths)):
            timed = word_timestamps(probs[:length], ids, self.tokenizer, step) if words else []
            results.append((self.tokenizer.decode(ids), timed))
        return results

    def log_prob_batches(self, sources, batch_size: int = 8, on_error: Callable[[AudioError], None] | None = None,
                         sample_rate: int = SAMPLE_RATE) -> Iterator[LogProbBatch]:
        """The model run over the sources' chunks `batch_size` at a time, as `transcribe` runs it, so that
        `asr evaluate` and `asr tune-lm` decode the same log-probs. Unreadable sources go to `on_error` (default:
        logged)."""
        map_large_allocations()
        for batch in batched(numbered_chunks(sources, sample_rate, on_error or report), batch_size):
            yield batch, *self.log_probs([chunk.wave for _, _, chunk in batch])

    def transcribe(self, sources, batch_size: int = 8, on_error: Callable[[AudioError], None] | None = None,
                   words: bool = True, sample_rate: int = SAMPLE_RATE,
                   progress: Callable[[float], None] | None = None) -> Iterator[Transcript]:
        """One Transcript per source, in order. A source is an audio file (path or binary file object) or
        a mono waveform (S,) as a numpy array of floats at `sample_rate` (or anything np.asarray takes); one source may
        be passed alone. `words=False` skips the word timings (the CTC alignment) when only text is wanted.

        Recordings longer than MAX_CHUNK_SECONDS are decoded in chunks cut at pauses (asr.inference.chunking), files
        read a block at a time, so memory is bounded by `batch_size` chunks, not by the file; the chunks'
        words are put on the recording's time axis. `batch_size` chunks or short files run at a time, and
        `progress` is called after each batch with the seconds of audio it held. A source that cannot be
        read is passed to `on_error` (default: logged) and skipped.
        """
        for _, transcript in self.numbered_transcripts(sources, batch_size, on_error, words, sample_rate, progress):
            yield transcript

    def numbered_transcripts(self, sources, batch_size: int = 8,
                             on_error: Callable[[AudioError], None] | None = None, words: bool = True,
                             sample_rate: int = SAMPLE_RATE,
                             progress: Callable[[float], None] | None = None) -> Iterator[tuple[int, Transcript]]:
        """(index of the source, its Transcript), as `transcribe` gives the transcripts."""
        if isinstance(sources, (str, os.PathLike)) or is_waveform(sources):
            sources = [sources]

        def decoded_chunks():
            for batch, log_probs, lengths in self.log_prob_batches(sources, batch_size, on_error, sample_rate):
                for (index, name, chunk), result in zip(batch, self.decoded(log_probs, lengths, words)):
                    yield index, name, chunk, result
                if progress:
                    progress(sum(len(chunk.wave) for _, _, chunk in batch) / SAMPLE_RATE)

        for index, name, parts, end in by_source(decoded_chunks()):
            yield index, stitch(name, [(start, text, timed) for start, (text, timed) in parts], end)


def by_source(items: Iterable[tuple[int, str, Chunk, Any]]
              ) -> Iterator[tuple[int, str, list[tuple[float, Any]], float]]:
    """Per-chunk results, (source index, name, chunk, result) in order, regrouped per source: (index, name,
    [(chunk start, result), ...], end in seconds) once its last chunk is in. The chunks themselves are not kept
    (their samples are done with); a source that failed part-way is left behind."""
    current, parts = None, []
    for index, name, chunk, result in items:
        if index != current:
            current, parts = index, []
        parts.append((chunk.start, result))
        if chunk.last:
            yield index, name, parts, chunk.end


def stitch(name: str, parts: list[tuple[float, str, list[Word]]], duration: float) -> Transcript:
    """One Transcript of `duration` seconds from the (start, text, words) of a recording's chunks in order,
    words in its time."""
    words = [Word(w.word, round(start + w.start, 3), round(start + w.end, 3), w.confidence)
             for start, _, timed in parts for w in timed]
    return Transcript(name, joined(text for _, text, _ in parts), round(duration, 3), words)


def joined(texts: Iterable[str]) -> str:
    """The text of a recording from its chunks' texts in order."""
    return " ".join(text for text in texts if text)


@functools.cache
def map_large_allocations(threshold: int = 1 << 20) -> None:
    """Have glibc serve allocations of `threshold` bytes and more by mmap, which returns them to the OS when
    freed, rather than from its heap, which the varied sizes of chunks' tensors fragment: peak RSS over
    1 h of audio then stays at that of the first minutes (measured: 966 -> about 740 MB). Process-wide,
    once; a no-op where the C library is not glibc."""
    mallopt(M_MMAP_THRESHOLD, threshold)


def mallopt(parameter: int, value: int) -> None:
    """Set one of glibc malloc's parameters for the whole process; a no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(parameter, value)


def numbered_chunks(sources: Iterable, sample_rate: int,
                    on_error: Callable[[AudioError], None]) -> Iterator[tuple[int, str, Chunk]]:
    """(source index, name, Chunk) for the readable sources in order; the others go to `on_error`."""
    for index, source in enumerate(sources):
        is_array = is_waveform(source)
        name = f"<array {index}>" if is_array else source_name(source)
        try:
            with spooled(source) as readable:
                if is_array:
                    blocks = [(as_wave(readable, name), sample_rate)]
                elif audio_duration(readable) > MAX_CHUNK_SECONDS:
                    blocks = stream_audio(readable)  # read a block at a time
                else:  # a short file
                    blocks = [(load_audio(readable), SAMPLE_RATE)]
                yield from ((index, name, chunk) for chunk in chunks(blocks))
        except AudioError as err:
            on_error(err if err.path == name else AudioError(name, err.cause))


@contextmanager
def spooled(source):
    """A file object (stdin, a pipe or not) copied a block at a time to a temporary file, whose path is given in its
    place, so that it is read as files are, a block at a time, whatever its length; a path or an array as it is."""
    if isinstance(source, (str, os.PathLike)) or is_waveform(source):
        yield source
        return
    with tempfile.NamedTemporaryFile(prefix="asr-stdin-") as spool:
        shutil.copyfileobj(source, spool)
        spool.flush()
        yield spool.name


def decoder_summary(cfg: DecoderConfig) -> str:
    """The decoder a resolved config runs, in words: "beam search (beam 100) with LM x.lm.bin (...)", ..."""
    if cfg.kind == "beam":
        lm = (f"with LM {cfg.lm} (lm_weight {cfg.lm_weight:g}, word_score {cfg.word_score:g})" if cfg.lm
              else "without an LM")
        return f"beam search (beam {cfg.beam_size}) {lm}"
    if cfg.kind == "choice":
        return f"a choice among the transcripts in {cfg.choices}"
    return "greedy best path (no LM)"


def is_waveform(source) -> bool:
    """Whether a source is samples in memory: a numpy array, or anything np.asarray takes (a CPU torch tensor)."""
    return hasattr(source, "__array__")


def as_wave(array, name: str) -> np.ndarray:
    """A mono waveform given as an array (S,) of floats -> float32 numpy (S,); AudioError if it is none."""
    array = np.asarray(array)
    if array.ndim != 1:
        raise AudioError(name, f"an array of shape {array.shape}; pass one mono waveform of shape (S,), "
                               "e.g. the mean over channels")
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(name, f"{array.dtype} samples; pass floats in [-1, 1] (e.g. int16 samples / 32768)")
    if array.size == 0:
        raise AudioError(name, "contains no audio samples")
    if not np.isfinite(array).all():
        raise AudioError(name, "contains NaN or infinite samples")
    return array.astype(np.float32, copy=False)


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive items, the last one shorter (itertools.batched from Python 3.12)."""
    if size < 1:
        raise ValueError(f"the batch size must be at least 1, not {size}")
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def report(err: AudioError) -> None:
    log.error("skipped %s", err)


def load_model(path: str | os.PathLike | None = None, device: str | None = None,
               decoder: DecoderConfig | None = None, quantize: str | None = None,
               threads: int | None = None) -> Recognizer:
    """A Recognizer for a model: an ONNX export (`asr export --format onnx`, with its JSON beside it), run in
    onnxruntime on the CPU with no torch, or a model bundle, run by torch; None or "default": the default model
    shipped with the package, its ONNX export, or its bundle for a device other than the CPU or for `quantize`.

    `decoder` says how to decode, what it leaves open decided by resolve_decoder: a model with an LM beside
    its file (MODEL.lm.bin, as the shipped model has) decodes with beam search and that LM, others greedily;
    e.g. DecoderConfig("greedy"), or DecoderConfig(lm="lm.bin") for a word n-gram made by `asr lm build`.
    `quantize="int8"` runs a bundle's LSTM and linear layers with int8 weights (CPU only; asr.inference.quantize).
    `threads`: the CPU threads the network may use (default: the runtime's own choice).
    """
    path = runtime_model(path, device, quantize)
    if exported_format(path) == "onnx":
        network = load_onnx(path, device, quantize, threads)
    else:
        from asr.inference.torch_network import load_torch

        network = load_torch(path, device, quantize, threads)
    return Recognizer(network, decoder, path)


def runtime_model(name, device: str | None, quantize: str | None) -> Path:
    """The file a model name runs from: a shipped model's ONNX export for None, "default" or "streaming" on the CPU,
    unless quantized at load time (its bundle then, as for other devices); any other name as it is."""
    shipped = shipped_name(name)
    if shipped and device in (None, "cpu") and not quantize and (ASSETS / f"{shipped}.onnx").is_file():
        return ASSETS / f"{shipped}.onnx"
    return model_path(name)
