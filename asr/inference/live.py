"""Live transcription, `asr transcribe --stream FILE|-` and `--live`: 16 kHz chunks from an audio file, stdin or a
microphone, fed to a streaming Recognizer's TranscriptStream (asr.inference.streaming) as they come, each event
printed at once: a text line per final (on a terminal, the partial under way redrawn in place below them) or a JSON
object per event."""

import json
import logging
import queue
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import BinaryIO, TextIO

import numpy as np

from asr.core.audio import SAMPLE_RATE, Resampler, stream_audio
from asr.core.errors import AsrError
from asr.inference.streaming import StreamEvent, TranscriptStream

log = logging.getLogger(__name__)

CLEAR_LINE = "\r\x1b[K"  # back to the start of the terminal's line, and erase it
NO_MICROPHONE = ("no audio input device found (sounddevice lists none); connect a microphone, or stream a file with "
                 "--stream FILE")
STALL_SECONDS = 5.0  # a microphone that gives nothing this long has stopped
CHUNK_SECONDS = 0.1  # audio fed to the model at a time, by default


class MicrophoneError(AsrError):
    """No microphone to record from: the package, the library or the device is missing."""


def chunk_samples(chunk_seconds: float, rate: int = SAMPLE_RATE) -> int:
    return max(1, round(chunk_seconds * rate))


def file_chunks(source: str | BinaryIO, chunk_seconds: float, realtime: bool = True) -> Iterator[np.ndarray]:
    """16 kHz mono float32 chunks (S,) of `chunk_seconds` (the last one shorter) of an audio file, or of stdin
    ("-"), read as it arrives; with `realtime`, each given when its audio would have been spoken (paced), else as
    fast as they are read. AudioError, naming the file, for audio that cannot be read."""
    size = chunk_samples(chunk_seconds)
    if source == "-":
        source = sys.stdin.buffer if sys.stdin.buffer.seekable() else PipeReader(sys.stdin.buffer)
    chunks = rechunked((block for block, _ in stream_audio(source, block_values=size)), size)
    return paced(chunks) if realtime else chunks


def rechunked(blocks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Blocks (S_b,) of any sizes -> chunks of `size` samples, the last one shorter."""
    held = np.zeros(0, dtype=np.float32)
    for block in blocks:
        held = np.concatenate([held, block])
        while len(held) >= size:
            chunk, held = held[:size], held[size:]
            yield chunk
    if len(held):
        yield held


def paced(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """The chunks, each given once the audio up to its end would have been spoken since the first was asked for,
    as a microphone gives them."""
    start, spoken = time.monotonic(), 0
    for chunk in chunks:
        spoken += len(chunk)
        time.sleep(max(0.0, start + spoken / SAMPLE_RATE - time.monotonic()))
        yield chunk


class PipeReader:
    """A pipe (stdin) as the seekable binary file that soundfile reads, so that a WAV or FLAC is decoded as its bytes
    arrive, not once the pipe ends: libsndfile reads the header, skips ahead (past a WAV's data chunk, looking for
    more chunks; told the file ends there) and comes back, then reads on. The first `keep` bytes and the last
    `keep` read are kept for it to come back to; reading elsewhere behind is an OSError."""

    name = "<stdin>"  # for the errors of asr.core.audio
    UNKNOWN_END = 1 << 62  # where the end is, for libsndfile: past anything

    def __init__(self, pipe: BinaryIO, keep: int = 1 << 16):
        self.pipe, self.keep = pipe, keep
        self.head = self.tail = b""  # the first `keep` bytes, and the last `keep` read, which end at `received`
        self.received = self.position = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.position, self.UNKNOWN_END)[whence]
        self.position = base + offset
        return self.position

    def read(self, size: int = -1) -> bytes:
        if self.position > self.received:  # skipped ahead: as if the file ended here
            return b""
        data = self.kept(self.position, self.received if size < 0 else min(self.position + size, self.received))
        if size < 0 or len(data) < size:
            data += self.receive(-1 if size < 0 else size - len(data))
        self.position += len(data)
        return data

    def receive(self, size: int) -> bytes:
        """`size` more bytes from the pipe (fewer at its end; -1: to its end)."""
        data = self.pipe.read(size)
        self.head += data[:self.keep - len(self.head)]
        self.tail = (self.tail + data)[-self.keep:]
        self.received += len(data)
        return data

    def kept(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of those received, from the first or the last `keep`."""
        if end <= len(self.head):
            return self.head[start:end]
        if start < self.received - len(self.tail):
            raise OSError(f"cannot go back to byte {start} of a pipe")
        first = self.received - len(self.tail)
        return self.tail[start - first:end - first]


def microphone_chunks(chunk_seconds: float, device: int | str | None = None) -> Iterator[np.ndarray]:
    """16 kHz mono float32 chunks (S,) of about `chunk_seconds` from a microphone (sounddevice's InputStream;
    `device`: its index or part of its name, default: the system's), recorded at 16 kHz or else at the device's
    own rate and resampled. Recording starts when the first chunk is asked for; a missing sounddevice, PortAudio or
    device is a MicrophoneError at once, before that."""
    sd = import_sounddevice()
    rate = input_rate(sd, device)
    return recorded(sd, device, rate, chunk_samples(chunk_seconds, rate))


def import_sounddevice():
    try:
        import sounddevice
    except ModuleNotFoundError as err:
        raise MicrophoneError("recording needs the sounddevice package: pip install 'asr[live]'") from err
    except OSError as err:  # sounddevice imports, but finds no PortAudio library
        raise MicrophoneError(f"recording needs the PortAudio library ({err}): install it (Debian/Ubuntu: apt-get "
                              "install libportaudio2)") from err
    return sounddevice


def input_rate(sd, device: int | str | None) -> int:
    """The rate to record from `device` at: 16 kHz if it takes it, else its own default."""
    try:
        info = sd.query_devices(device, kind="input")
    except (sd.PortAudioError, ValueError) as err:
        if device is None:
            raise MicrophoneError(NO_MICROPHONE) from err
        raise MicrophoneError(f"--input-device {device}: {err}; `python -m sounddevice` lists the devices") from err
    try:
        sd.check_input_settings(device, channels=1, dtype="float32", samplerate=SAMPLE_RATE)
        return SAMPLE_RATE
    except (sd.PortAudioError, ValueError):
        return int(info["default_samplerate"])


def recorded(sd, device: int | str | None, rate: int, block: int) -> Iterator[np.ndarray]:
    """The microphone's blocks of `block` samples, resampled to 16 kHz, through a queue from PortAudio's thread."""
    blocks, resample = queue.Queue(), Resampler(rate, SAMPLE_RATE)

    def callback(data, frames, timing, status):
        if status:
            log.warning("audio input: %s", status)
        blocks.put(data[:, 0].copy())

    with sd.InputStream(samplerate=rate, blocksize=block, device=device, channels=1, dtype="float32",
                        callback=callback):
        log.info("listening (Ctrl-C to stop)")
        while True:
            try:
                yield resample(blocks.get(timeout=STALL_SECONDS))
            except queue.Empty:
                raise MicrophoneError(f"the audio input gave nothing for {STALL_SECONDS:g} s; is the microphone "
                                      "still connected?") from None


def text_writer(out: TextIO) -> Callable[[StreamEvent], None]:
    """Finals one per line; on a terminal, also the partial under way, redrawn in place on the line below them (its
    end, if it is wider than the terminal)."""
    tty = out.isatty()

    def write(event: StreamEvent) -> None:
        if event.type == "partial" and tty:
            width = max(1, shutil.get_terminal_size().columns - 1)
            out.write(f"{CLEAR_LINE}{event.text[-width:]}")
        elif event.type == "final":
            out.write((CLEAR_LINE if tty else "") + (event.text + "\n" if event.text else ""))
        out.flush()

    return write


def json_writer(out: TextIO) -> Callable[[StreamEvent], None]:
    """Every event as a JSON object on a line of its own (StreamEvent.to_dict), flushed at once."""
    def write(event: StreamEvent) -> None:
        out.write(json.dumps(event.to_dict()) + "\n")
        out.flush()

    return write


WRITERS = {"text": text_writer, "json": json_writer}  # asr transcribe --stream/--live --format


def transcribe_live(stream: TranscriptStream, chunks: Iterator[np.ndarray],
                    write: Callable[[StreamEvent], None]) -> None:
    """Feed the chunks to the stream and each event it gives to `write`, until they end or Ctrl-C stops them; then
    the events of the stream's end (the last utterance's final)."""
    with interrupt_stops() as stop, closing(chunks):
        for chunk in chunks:
            for event in stream.feed(chunk):
                write(event)
            if stop.is_set():
                break
    for event in stream.finish():
        write(event)


@contextmanager
def interrupt_stops() -> Iterator[threading.Event]:
    """An event that Ctrl-C (SIGINT) sets, where it would raise KeyboardInterrupt, so that a chunk being fed is fed
    whole; a second Ctrl-C raises it. Only the main thread receives signals: elsewhere the event is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def interrupted(signum, frame):
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
