"""`asr serve`: a transcription service in the form of OpenAI's audio API, so its clients work unchanged.

POST /v1/audio/transcriptions takes a multipart upload (field `file`; optional `response_format`: json,
text, srt, vtt or verbose_json; `stream`: true for server-sent events) and answers as OpenAI's API does;
GET /health and GET /metrics (JSON counters) are for whoever runs it. The model is loaded once. Requests that
arrive together are decoded together: the Batcher gathers the chunks (asr.inference.chunking: long uploads
are cut as `asr transcribe` cuts them) of waiting requests into batches of up to `max_batch`, waiting at most
`max_wait` seconds for a batch to fill, and runs each batch on a worker thread. At most `max_queue` requests
whose upload is complete are admitted at a time; more get 503 with Retry-After. Uploads in progress are
budgeted apart, by the bytes they hold, and each must keep arriving (`upload_timeout`, MIN_UPLOAD_RATE) or
gets 408, so slow clients hold neither slots nor memory. Bad input gets a 4xx JSON error in OpenAI's shape,
{"error": {"message", "type", "param"}}, and the service goes on; a client that hangs up frees its slot.

WebSocket /v1/audio/stream is live recognition: words on screen while the speaker is still talking. The client
connects with the query parameters `sample_rate` (Hz, default 16000, 4000 to 384000) and `encoding` (`pcm_s16le`,
the default, or `pcm_f32le`), sends the audio as binary messages of raw mono PCM, of any length (whole samples),
and ends with the text message {"type": "end"}. The server answers each event of the stream
(asr.inference.streaming) as a text message, {"type": "partial" or "final", "text", "start", "end", "words"}
(seconds from the start of the stream; words, each {"word", "start", "end", "confidence"}, in finals only): partials
as the utterance under way changes, a final when the speaker pauses; after the end message the last finals, then
{"type": "done"}, and it closes (1000). A client that closes first has its stream dropped. Bad query parameters, a
message of a part of a sample or of non-finite floats, or a text message other than the end one get one
{"type": "error", "message"} and close 1008 (parameters) or 1003 (messages); so do a stream over `max_audio` seconds
(1008, after the finals of what came), one that sends nothing for `upload_timeout` seconds (1008) and one past
`max_streams` streams at once (1013: retry later). Each stream
has its own state over the shared streaming model (`asr serve --stream-model`), whose network and decoder run on
worker threads, so streams and uploads are served side by side.

Starlette routes and parses the multipart form (python-multipart); uvicorn serves HTTP and WebSockets and shuts
down gracefully on SIGTERM or Ctrl-C, finishing the requests in flight within `shutdown_timeout` seconds (open
streams are closed with 1012 at once).
"""

import asyncio
import contextlib
import copy
import io
import json
import logging
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import uvicorn
from python_multipart.multipart import parse_options_header
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asr.core.audio import (
    AUDIO_EXTENSIONS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    SAMPLE_RATE,
    AudioError,
    AudioLimitError,
    Resampler,
    stream_audio,
)
from asr.core.config import ConfigError
from asr.core.decoding import DecoderConfig, resolve_decoder
from asr.core.errors import AsrError
from asr.inference.chunking import Chunk, chunks
from asr.inference.streaming import EndpointConfig, StreamEvent
from asr.inference.transcribe import (
    M_ARENA_MAX,
    Recognizer,
    Transcript,
    decoder_summary,
    load_model,
    mallopt,
    map_large_allocations,
    stitch,
)
from asr.inference.writers import cues, render

log = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
TIMED_FORMATS = ("srt", "vtt", "verbose_json")  # the formats that need the words' times
STREAMED_FORMATS = ("json", "text")  # as OpenAI's API: the others are not streamed
MEDIA_TYPES = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}
MALLOC_ARENAS = 2  # glibc's heaps for all threads together (default: one per thread, up to 8 per core)
MAX_PADDING = 0.25  # a batch is run in groups that pad at most this share of their samples
RETRY_AFTER_SECONDS = 1  # what a client turned away by a full queue is told to wait
CLIENT_CLOSED = 499  # nginx's status for a request whose client hung up first; no one receives it
MIN_UPLOAD_RATE = 16_000  # bytes/s an upload must average past its first upload_timeout seconds (128 kbit/s)
ENCODINGS = {"pcm_s16le": ("<i2", 1 / 32768), "pcm_f32le": ("<f4", 1.0)}  # a stream's samples: numpy dtype, scale
STREAM_PARAMETERS = ("sample_rate", "encoding")
ENDPOINT = EndpointConfig(silence=0.6, max_utterance=30.0)
FEED_SECONDS = 0.1  # a stream runs its network on this much audio at a time (fewer, larger windows than per output
# step: RTF 0.04 against 0.13 for 20 ms at a time with conf/streaming.yaml's network), and a long message is decoded
# in pieces this long, so that its samples are never held as float32 at once
NORMAL, UNSUPPORTED, POLICY, INTERNAL, TRY_AGAIN = 1000, 1003, 1008, 1011, 1013  # WebSocket close codes (RFC 6455)


class RequestError(Exception):
    """A request the service cannot answer, with the HTTP status and the message that says why."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


@dataclass
class Metrics:
    """What GET /metrics reports."""

    requests: int = 0  # transcribed
    audio_seconds: float = 0.0  # of the transcribed requests
    errors: int = 0  # answered with an error, 503s included
    rejected: int = 0  # 503: the queue or the upload budget was full
    timeouts: int = 0  # 408: uploads that stalled or crawled
    disconnects: int = 0  # clients that hung up before their answer
    uploading: int = 0  # requests whose upload is in progress
    upload_bytes: int = 0  # what those hold
    queue_depth: int = 0  # requests admitted (uploaded) and not yet answered
    batches: int = 0
    batched_chunks: int = 0  # chunks in those batches
    largest_batch: int = 0
    streams: int = 0  # WebSocket streams started (/v1/audio/stream)
    streaming: int = 0  # those open now
    stream_audio_seconds: float = 0.0  # the audio they received
    stream_errors: int = 0  # streams ended by an error event, refused ones included

    def count_batch(self, size: int) -> None:
        self.batches, self.batched_chunks = self.batches + 1, self.batched_chunks + size
        self.largest_batch = max(self.largest_batch, size)


class Job:
    """One request's chunks on their way through the Batcher; `future` gets their (text, words) in order."""

    def __init__(self, chunks: list[Chunk], words: bool):
        self.chunks, self.words = chunks, words
        self.results: list = [None] * len(chunks)
        self.left = len(chunks)
        self.future = asyncio.get_running_loop().create_future()  # cancelled when its client hangs up

    def finish(self, index: int, result) -> None:
        self.results[index], self.left = result, self.left - 1
        if not self.left and not self.future.done():
            self.future.set_result(self.results)


class Batcher:
    """Dynamic batching: chunks of all waiting requests, up to `max_batch` at a time, decoded together."""

    def __init__(self, recognizer: Recognizer, max_batch: int, max_wait: float, metrics: Metrics):
        self.recognizer, self.max_batch, self.max_wait, self.metrics = recognizer, max_batch, max_wait, metrics
        self.queue: asyncio.Queue[tuple[Job, int]] = asyncio.Queue()  # (job, chunk index), bounded by admission
        self.active = 0  # requests whose chunks are queued or being decoded

    def coming(self) -> int:
        """Requests whose chunks are not queued yet: uploading, or admitted with their audio being read. A batch
        waits for them, for no others."""
        return self.metrics.uploading + self.metrics.queue_depth - self.active

    async def recognize(self, chunks: list[Chunk], words: bool) -> list:
        """(text, words) for each chunk, decoded in batches with other requests' chunks."""
        job = Job(chunks, words)
        for index in range(len(chunks)):
            self.queue.put_nowait((job, index))
        self.active += 1
        try:
            return await job.future  # cancelling the caller cancels the job: its chunks left are skipped
        finally:
            self.active -= 1

    async def run(self) -> None:
        """Forever: take a batch, run the network on it on a worker thread, then search its log-probs on another
        while the network runs on the next batch (the beam search, which batching cannot speed up, overlaps the
        network instead of following it); at most one batch is being searched at a time."""
        searching: asyncio.Task | None = None
        while True:
            batch = [(job, i) for job, i in await self.next_batch() if not job.future.done()]
            if not batch:
                continue
            try:
                outputs = await asyncio.to_thread(self.network, [job.chunks[i].wave for job, i in batch])
            except Exception as err:  # e.g. MemoryError: these requests fail, the service goes on
                fail(batch, err)
                continue
            if searching is not None:
                await searching
            searching = asyncio.create_task(self.search(batch, outputs, any(job.words for job, _ in batch)))

    async def search(self, batch: list[tuple["Job", int]], outputs: list, words: bool) -> None:
        """Decode a batch's log-probs (from network) on a worker thread and hand out the results."""
        try:
            results = await asyncio.to_thread(self.decoded, outputs, len(batch), words)
        except Exception as err:
            fail(batch, err)
            return
        for (job, i), result in zip(batch, results):
            job.finish(i, result)
        self.metrics.count_batch(len(batch))

    async def next_batch(self) -> list[tuple[Job, int]]:
        """The first chunk to come, and those that come within `max_wait` of it while other requests are on
        their way, up to `max_batch`."""
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            if self.coming() <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on
                break
        return batch

    def network(self, waves: list[np.ndarray]) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
        """The log-probs (B_g, T, V) and lengths (B_g,) of waveforms (S_i,) run in groups of similar length (see
        length_groups), with each group's positions in `waves`."""
        return [(group, *self.recognizer.log_probs([waves[i] for i in group]))
                for group in length_groups([len(w) for w in waves])]

    def decoded(self, outputs: list[tuple[list[int], np.ndarray, np.ndarray]], size: int, words: bool) -> list:
        """(text, words) for each of the `size` waveforms whose log-probs `network` gave, in their order."""
        results = [None] * size
        for group, log_probs, lengths in outputs:
            for i, result in zip(group, self.recognizer.decoded(log_probs, lengths, words)):
                results[i] = result
        return results


def fail(batch: list[tuple[Job, int]], err: Exception) -> None:
    """Fail the requests of a batch that could not be decoded (those still waiting)."""
    for job, _ in batch:
        if not job.future.done():
            job.future.set_exception(err)


def length_groups(lengths: list[int], padding: float = MAX_PADDING) -> list[list[int]]:
    """The indices of `lengths`, longest first, in runs that pad at most the fraction `padding` of their
    samples when batched: a batch costs its longest member times its size, so a 2 s chunk padded to 15 s
    beside a long one wastes what batching saves."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        if group and lengths[group[0]] * (len(group) + 1) <= (1 + padding) * sum(lengths[j] for j in [*group, i]):
            group.append(i)
        else:
            groups.append([i])
    return groups


def read_upload(data: bytes, filename: str, max_seconds: float = float("inf")) -> list[Chunk]:
    """An uploaded audio file -> its chunks at SAMPLE_RATE, decoded a block at a time; RequestError naming the file if
    it is no audio, or 413 if it lasts over `max_seconds` or holds more samples x channels than that many seconds of
    48 kHz stereo (compressed silence packs hours into a few MB, and 8 channels at 384 kHz gigabytes into minutes):
    refused by its header before it is decoded, or as soon as its decoded samples pass the limit."""
    if not data:
        raise RequestError(400, f"{filename}: is an empty file (0 bytes); send an audio file", "file")
    upload = io.BytesIO(data)
    upload.name = filename  # for stream_audio's errors
    try:
        return list(chunks(stream_audio(upload, max_seconds=max_seconds)))
    except AudioLimitError as err:
        raise RequestError(413, f"{err} (asr serve --max-audio-minutes); send a shorter recording", "file") from err
    except AudioError as err:
        if Path(filename).suffix.lower() not in AUDIO_EXTENSIONS:
            raise RequestError(415, f"{filename}: an unsupported format; send one of {', '.join(AUDIO_EXTENSIONS)}",
                               "file") from err
        raise RequestError(400, str(err), "file") from err


@dataclass
class UploadLimits:
    size: int  # bytes one upload may have
    budget: int  # bytes all uploads in progress may hold together
    timeout: float  # seconds an upload may pause, and its grace before it must average MIN_UPLOAD_RATE


async def read_body(request: Request, limits: UploadLimits, metrics: Metrics) -> bytes:
    """The request's body; RequestError 413 past `limits.size` bytes, 503 if the uploads in progress would hold
    over `limits.budget`, 408 if it pauses over `limits.timeout` s or falls behind MIN_UPLOAD_RATE after that."""
    body, size, refusal, start = bytearray(), 0, None, time.monotonic()
    pieces = request.stream()
    metrics.uploading += 1
    try:
        while (piece := await next_piece(pieces, size, start, limits.timeout)) is not None:
            size += len(piece)
            refusal = refusal or over_limits(size, len(piece), limits, metrics)
            if refusal:  # the rest of a refused upload is read and dropped, so that its client, still sending,
                metrics.upload_bytes -= len(body)  # receives the answer
                body.clear()
            else:
                body += piece
                metrics.upload_bytes += len(piece)
    finally:
        metrics.uploading, metrics.upload_bytes = metrics.uploading - 1, metrics.upload_bytes - len(body)
    if refusal:
        raise refusal
    return bytes(body)


async def next_piece(pieces, size: int, start: float, timeout: float) -> bytes | None:
    """The next piece of a body of which `size` bytes came since `start`, None at its end; RequestError 408 if it
    does not come within `timeout` s, or before the upload falls behind MIN_UPLOAD_RATE past its first `timeout` s."""
    elapsed = time.monotonic() - start
    try:
        return await asyncio.wait_for(anext(pieces), min(timeout, timeout + size / MIN_UPLOAD_RATE - elapsed))
    except StopAsyncIteration:
        return None
    except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on
        raise RequestError(408, f"the upload stalled: {size} bytes in {time.monotonic() - start:.0f} s; an upload may "
                                f"pause at most {timeout:g} s and must average {MIN_UPLOAD_RATE / 1000:g} kB/s after "
                                "its first seconds (asr serve --upload-timeout)", "file") from None


def over_limits(size: int, piece: int, limits: UploadLimits, metrics: Metrics) -> RequestError | None:
    """The refusal of an upload that has reached `size` bytes with its latest `piece` bytes, if it is one."""
    if size > limits.size:
        return RequestError(413, f"the upload is over this service's limit of {limits.size / 1e6:g} MB (asr serve "
                                 "--max-upload-mb); send a shorter or compressed recording (.flac, .opus)", "file")
    if metrics.upload_bytes + piece > limits.budget:
        metrics.rejected += 1
        return RequestError(503, f"busy: the uploads in progress hold {metrics.upload_bytes / 1e6:.0f} MB, this "
                                 f"service's budget for them; retry in {RETRY_AFTER_SECONDS} s")
    return None


async def form_fields(request: Request, body: bytes) -> tuple[bytes, str, str, bool]:
    """The uploaded file's bytes and name, the response format, and whether to stream, of a multipart form read as
    `body`."""
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    async with Request(request.scope, replay).form(max_files=1) as form:
        upload, fmt, stream = form.get("file"), form.get("response_format") or "json", form.get("stream") or "false"
        if not isinstance(upload, UploadFile):
            raise RequestError(400, missing_file(request.headers.get("content-type", ""), body), "file")
        if fmt not in RESPONSE_FORMATS:
            raise RequestError(400, f"response_format {fmt!r} is not one of {', '.join(RESPONSE_FORMATS)}",
                               "response_format")
        if stream.lower() not in ("true", "false") or (stream.lower() == "true" and fmt not in STREAMED_FORMATS):
            raise RequestError(400, f"stream {stream!r} with response_format {fmt!r}: stream is true or false, and "
                                    f"true only with response_format {' or '.join(STREAMED_FORMATS)}", "stream")
        return await upload.read(), upload.filename or "upload", fmt, stream.lower() == "true"


def missing_file(content_type: str, body: bytes) -> str:
    """Why a form has no file field: its multipart body was cut short, or the audio was not sent as one."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind == b"multipart/form-data" and boundary and b"--" + boundary + b"--" not in body:
        return (f"the multipart/form-data body is truncated: its {len(body)} bytes end before its closing boundary "
                "(--BOUNDARY--), so the file field is incomplete; send the whole body")
    return "no audio: send it as the file field of a multipart/form-data body (curl -F file=@audio.wav)"


async def until_disconnect(request: Request, work):
    """What the coroutine `work` returns, or None if the client hangs up first (`work` is then cancelled).
    The body must have been read: what the client sends next is its disconnect."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(disconnected(request))
    await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if not task.done():
        task.cancel()
        return None
    return task.result()


async def disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def response(transcript: Transcript, fmt: str, stream: bool) -> Response:
    """The answer in OpenAI's response formats."""
    if stream:
        return events(transcript.text)
    if fmt == "json":
        return JSONResponse({"text": transcript.text})
    if fmt == "verbose_json":
        segments = [{"id": i, **asdict(cue)} for i, cue in enumerate(cues(transcript.words))]
        return JSONResponse({"task": "transcribe", "language": "english", "duration": transcript.duration,
                             "text": transcript.text, "words": [asdict(w) for w in transcript.words],
                             "segments": segments})
    return Response(render(transcript, fmt), media_type=MEDIA_TYPES[fmt])


def events(text: str) -> Response:
    """A transcript as OpenAI's streamed transcriptions send it: server-sent events, a `transcript.text.delta` for
    each word (with the space before it), then `transcript.text.done` with the whole text."""
    deltas = [{"type": "transcript.text.delta", "delta": word} for word in re.findall(r" ?[^ ]+", text)]
    done = {"type": "transcript.text.done", "text": text}
    return Response("".join(f"data: {json.dumps(event)}\n\n" for event in [*deltas, done]),
                    media_type="text/event-stream")


class StreamError(Exception):
    """A stream the service ends, with the WebSocket close code and the message that says why."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


NO_STREAM_MODEL = ("this service has no streaming model (the shipped one, `streaming`, is not installed): start asr "
                   "serve with --stream-model MODEL, a streaming model (one trained from conf/streaming.yaml)")


@dataclass
class StreamModel:
    """What /v1/audio/stream runs: a streaming model's Recognizer and its name, or None and why there is none."""

    recognizer: Recognizer | None
    name: str | None = None
    missing: str = NO_STREAM_MODEL  # the error event's message when there is none


def stream_model(served: Recognizer, served_name: str | None, requested: str | None,
                 decoder: DecoderConfig | None = None, **options) -> StreamModel:
    """The streaming model of a service that serves `served` (--model `served_name`): the model `requested`
    (--stream-model; ConfigError if it cannot stream), else the served model if it can, else the shipped streaming
    model if it is installed. Loaded once, with load_model's `options` (device, quantize, threads), decoding as
    `decoder` asks (see `loaded`)."""
    if requested is not None:
        recognizer = served if str(requested) == str(served_name or "default") else loaded(requested, served, decoder,
                                                                                         options)
        try:
            recognizer.network.streaming()  # now, not at each connection
        except ConfigError:
            raise ConfigError(f"--stream-model {requested}: not a streaming model (its bidirectional LSTMs read each "
                              "utterance to its end before giving any output); give the shipped streaming model "
                              "(--stream-model streaming) or one trained from conf/streaming.yaml") from None
        return streaming_with(recognizer, str(requested))
    try:
        served.network.streaming()
        return streaming_with(served, str(served_name or "default"))
    except AsrError as err:
        log.debug("the served model cannot stream: %s", err)
    try:
        recognizer = loaded("streaming", served, decoder, options)
        recognizer.network.streaming()
    except FileNotFoundError:  # model_path: no shipped streaming model
        log.info("no live streams (/v1/audio/stream): %s", NO_STREAM_MODEL)
        return StreamModel(None)
    except AsrError as err:
        log.warning("no live streams (/v1/audio/stream): %s", err)
        return StreamModel(None, missing=f"this service's streaming model cannot be loaded ({err}); start asr serve "
                                         "with --stream-model MODEL, a streaming model")
    return streaming_with(recognizer, "streaming")


def streaming_with(recognizer: Recognizer, name: str) -> StreamModel:
    log.info("live streams (/v1/audio/stream) run the model %s", name)
    return StreamModel(recognizer, name)


def loaded(name: str, served: Recognizer, decoder: DecoderConfig | None, options: dict) -> Recognizer:
    """The model `name`, decoding as `decoder` asks, with the served model's decoder where that is the same one for
    the same tokens (the shipped models share their LM): the LM is then not loaded again (0.4 s, and its memory)."""
    recognizer = load_model(name, decoder=DecoderConfig("greedy"), **options)
    if (resolve_decoder(decoder, recognizer.path) == served.decoder_config
            and recognizer.tokenizer.vocab == served.tokenizer.vocab):
        recognizer.decode, recognizer.decoder_config = served.decode, served.decoder_config
        log.info("%s decodes with the served model's decoder: %s", name, decoder_summary(served.decoder_config))
    else:
        recognizer.set_decoder(decoder)
    return recognizer


def serialized(recognizer: Recognizer, lock: threading.Lock) -> Recognizer:
    """A view of `recognizer` (its network and tokenizer shared) whose decoder runs under `lock`, one call at a time:
    flashlight's beam search keeps its hypotheses in the decoder, and the Batcher's batches and the streams' finals
    are decoded on worker threads of their own."""
    view, decode = copy.copy(recognizer), recognizer.decode

    def locked(log_probs: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
        with lock:
            return decode(log_probs, lengths)

    view.decode = locked
    return view


def stream_format(query) -> tuple[int, str]:
    """The sample rate and encoding that a stream's query parameters ask for; StreamError (1008) for others."""
    if unknown := [name for name in query if name not in STREAM_PARAMETERS]:
        raise StreamError(POLICY, f"unknown query parameter {unknown[0]!r}: a stream takes sample_rate (Hz) and "
                                  f"encoding ({' or '.join(ENCODINGS)})")
    rate, encoding = query.get("sample_rate", str(SAMPLE_RATE)), query.get("encoding", "pcm_s16le")
    if not (rate.isascii() and rate.isdigit() and MIN_SAMPLE_RATE <= int(rate) <= MAX_SAMPLE_RATE):
        raise StreamError(POLICY, f"sample_rate {rate!r}: give the audio's rate in Hz, a whole number from "
                                  f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} (e.g. ?sample_rate=48000)")
    if encoding not in ENCODINGS:
        raise StreamError(POLICY, f"encoding {encoding!r}: send raw little-endian PCM, 16-bit integers (pcm_s16le, "
                                  "the default) or 32-bit floats (?encoding=pcm_f32le)")
    return int(rate), encoding


class LiveStream:
    """One WebSocket's audio -> its StreamEvents: raw PCM decoded, resampled to 16 kHz and fed to a TranscriptStream
    of its own FEED_SECONDS at a time, until `max_seconds` of it have come. Its feed and finish run on a worker
    thread, one call at a time."""

    def __init__(self, recognizer: Recognizer, rate: int, encoding: str, max_seconds: float):
        step = recognizer.network.cfg.output_step_seconds
        self.transcript = recognizer.stream(ENDPOINT, min_steps=max(1, round(FEED_SECONDS / step)))
        self.resample = Resampler(rate, SAMPLE_RATE)
        self.rate, self.encoding = rate, encoding
        self.received, self.limit = 0, int(max_seconds * rate)  # samples at `rate`
        self.full = False  # audio past `max_seconds` came, and was dropped

    @property
    def seconds(self) -> float:
        return self.received / self.rate

    def feed(self, data: bytes) -> list[StreamEvent]:
        """A binary message's PCM -> the events it brings (often none); StreamError (1003) for part of a sample or
        non-finite floats. A long message is decoded a block at a time: its samples as float32 are never held."""
        samples = self.samples(data)  # (S,) as sent, not copied
        kept = samples[:self.limit - self.received]
        self.received, self.full = self.received + len(kept), len(kept) < len(samples)
        block, scale = round(FEED_SECONDS * self.rate), np.float32(ENCODINGS[self.encoding][1])
        return [event for start in range(0, len(kept), block)
                for event in self.transcript.feed(self.resample(kept[start:start + block].astype(np.float32) * scale))]

    def finish(self) -> list[StreamEvent]:
        """The last events, now that the stream has ended: the last utterance's final, if it holds speech."""
        return self.transcript.feed(self.resample.flush()) + self.transcript.finish()

    def samples(self, data: bytes) -> np.ndarray:
        """A message's PCM -> its samples (S,) in the stream's encoding (int16 or float32), a view of `data`."""
        dtype = np.dtype(ENCODINGS[self.encoding][0])
        if len(data) % dtype.itemsize:
            raise StreamError(UNSUPPORTED, f"a binary message of {len(data)} bytes: {self.encoding} samples are "
                                           f"{dtype.itemsize} bytes each; send whole samples")
        samples = np.frombuffer(data, dtype)
        if dtype.kind == "f" and not np.isfinite(samples).all():
            raise StreamError(UNSUPPORTED, "NaN or infinite samples: send floats in [-1, 1]")
        return samples


async def next_audio(websocket: WebSocket, timeout: float) -> bytes | None:
    """A stream's next binary message, None at its end message; WebSocketDisconnect if the client hangs up,
    StreamError (1003) for any other text message, and (1008) if none comes within `timeout` seconds: a client that
    has stopped sending would hold one of the service's streams for ever."""
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout)
    except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11
        raise StreamError(POLICY, f"no message for {timeout:g} s: a live stream sends its audio as it comes (asr "
                                  "serve --upload-timeout); send silence while there is nothing to say") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", NORMAL))
    if message.get("bytes") is not None:
        return message["bytes"]
    text = message.get("text") or ""
    with contextlib.suppress(ValueError, RecursionError):
        request = json.loads(text)
        if isinstance(request, dict) and request.get("type") == "end":
            return None
    raise StreamError(UNSUPPORTED, f"the text message {text[:80]!r}: a stream's audio comes in binary messages, "
                                   'and its end as the text message {"type": "end"}')


async def send_events(websocket: WebSocket, events: list[StreamEvent]) -> None:
    for event in events:
        await websocket.send_json(event.to_dict())


async def refuse(websocket: WebSocket, err: StreamError) -> None:
    """A stream's error event, then its close with the error's code, unless the client has gone."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_json({"type": "error", "message": err.message})
        await websocket.close(err.code)


def create_app(recognizer: Recognizer, max_batch: int = 16, max_wait: float = 0.02, max_queue: int = 64,
               max_upload: int = 25_000_000, max_audio: float = 3600.0, upload_timeout: float = 10.0,
               model_name: str = "default", streamer: StreamModel | None = None, max_streams: int = 8) -> Starlette:
    """The service around a loaded model, and `streamer`'s for live streams; `max_wait`, `max_audio` (an upload's
    or a stream's duration) and `upload_timeout` in seconds, `max_upload` in bytes. Uploads in progress may hold
    `max_queue` x `max_upload` bytes together; `max_streams` streams may be open at once."""
    if min(max_batch, max_queue, max_upload, max_streams) < 1 or max_wait < 0 or upload_timeout <= 0:
        raise ConfigError("--max-batch, --max-queue, --max-streams, --max-upload-mb and --upload-timeout must be "
                          "positive, --max-wait-ms at least 0")
    map_large_allocations()  # chunks of every length come and go: keep the heap from fragmenting
    mallopt(M_ARENA_MAX, MALLOC_ARENAS)  # the worker threads' own heaps grew RSS by 50 MB in 4 min of soak
    metrics, started = Metrics(), time.monotonic()
    decoding = threading.Lock()  # for the served model's decoder
    streamer = streamer or StreamModel(None)
    live_recognizer = streamer.recognizer and serialized(
        streamer.recognizer, decoding if streamer.recognizer.decode is recognizer.decode else threading.Lock())
    batcher = Batcher(serialized(recognizer, decoding), max_batch, max_wait, metrics)
    limits = UploadLimits(max_upload, max_queue * max_upload, upload_timeout)

    async def transcriptions(request: Request) -> Response:
        data, filename, fmt, stream = await form_fields(request, await read_body(request, limits, metrics))
        if metrics.queue_depth >= max_queue:  # admitted once uploaded: a slow upload holds no slot
            metrics.rejected += 1
            raise RequestError(503, f"busy: {max_queue} requests are being served (asr serve --max-queue); retry "
                                    f"in {RETRY_AFTER_SECONDS} s")
        metrics.queue_depth += 1
        try:
            transcript = await until_disconnect(request, transcribe(data, filename, fmt in TIMED_FORMATS))
        finally:
            metrics.queue_depth -= 1
        if transcript is None:
            metrics.disconnects += 1
            return Response(status_code=CLIENT_CLOSED)
        metrics.requests, metrics.audio_seconds = metrics.requests + 1, metrics.audio_seconds + transcript.duration
        return response(transcript, fmt, stream)

    async def transcribe(data: bytes, filename: str, words: bool) -> Transcript:
        pieces = await asyncio.to_thread(read_upload, data, filename, max_audio)
        results = await batcher.recognize(pieces, words)
        parts = [(chunk.start, text, timed) for chunk, (text, timed) in zip(pieces, results)]
        return stitch(filename, parts, pieces[-1].end)

    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await live_stream(websocket)
        except StreamError as err:
            metrics.stream_errors += 1
            await refuse(websocket, err)
        except WebSocketDisconnect:  # the client hung up (or the service is stopping): its stream is dropped
            pass
        except Exception as err:
            log.exception("failed: stream %s", websocket.url.path, exc_info=err)
            metrics.stream_errors += 1
            await refuse(websocket, StreamError(INTERNAL, f"internal error: {type(err).__name__}: {err}"))

    async def live_stream(websocket: WebSocket) -> None:
        """A stream's events as its audio comes, then its last finals and "done" once it ends."""
        rate, encoding = stream_format(websocket.query_params)
        if live_recognizer is None:
            raise StreamError(POLICY, streamer.missing)
        if metrics.streaming >= max_streams:
            raise StreamError(TRY_AGAIN, f"busy: {max_streams} streams are open, this service's limit (asr serve "
                                         "--max-streams); retry later")
        audio = LiveStream(live_recognizer, rate, encoding, max_audio)
        metrics.streams, metrics.streaming = metrics.streams + 1, metrics.streaming + 1
        try:
            while not audio.full and (data := await next_audio(websocket, upload_timeout)) is not None:
                received = audio.seconds
                events = await asyncio.to_thread(audio.feed, data)
                metrics.stream_audio_seconds += audio.seconds - received
                await send_events(websocket, events)
            await send_events(websocket, await asyncio.to_thread(audio.finish))
        finally:
            metrics.streaming -= 1
        if audio.full:
            raise StreamError(POLICY, f"the stream reached this service's limit of {max_audio / 60:g} minutes (asr "
                                      "serve --max-audio-minutes) and its audio past it was dropped; open a new "
                                      "stream to go on")
        await websocket.send_json({"type": "done"})
        await websocket.close(NORMAL)

    async def health(request: Request) -> Response:  # the models are loaded before the service starts
        return JSONResponse({"status": "ok", "model": model_name, "stream_model": streamer.name})

    async def metrics_json(request: Request) -> Response:
        return JSONResponse({**asdict(metrics), "audio_seconds": round(metrics.audio_seconds, 3),
                             "stream_audio_seconds": round(metrics.stream_audio_seconds, 3),
                             "decoding": batcher.active, "chunks_waiting": batcher.queue.qsize(),
                             "uptime_seconds": round(time.monotonic() - started, 1), "rss_mb": rss_mb()})

    async def request_error(request: Request, err: Exception) -> Response:
        status, message, param = ((err.status, err.message, err.param) if isinstance(err, RequestError)
                                  else (err.status_code, err.detail, None))
        metrics.errors, metrics.timeouts = metrics.errors + 1, metrics.timeouts + (status == 408)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error" if status < 500 else
                                       "server_error", "param": param, "code": None}}, status, headers)

    async def client_gone(request: Request, err: Exception) -> Response:
        metrics.disconnects += 1
        return Response(status_code=CLIENT_CLOSED)

    async def server_error(request: Request, err: Exception) -> Response:
        log.exception("failed: %s %s", request.method, request.url.path, exc_info=err)
        return await request_error(request, RequestError(500, f"internal error: {type(err).__name__}: {err}"))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()  # after uvicorn has answered the requests in flight
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    routes = [Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]), Route("/health", health),
              Route("/metrics", metrics_json), WebSocketRoute("/v1/audio/stream", live)]
    handlers = {RequestError: request_error, HTTPException: request_error, ClientDisconnect: client_gone,
                Exception: server_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


def rss_mb() -> float | None:
    """This process's resident memory in MB (Linux), else None."""
    try:
        return round(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except (OSError, ValueError):
        return None


# uvicorn's logging with its access log on stderr, not stdout: stdout holds only the URL, for the caller
LOG_CONFIG = {**uvicorn.config.LOGGING_CONFIG,
              "handlers": {name: {**handler, "stream": "ext://sys.stderr"}
                           for name, handler in uvicorn.config.LOGGING_CONFIG["handlers"].items()}}


def serve(recognizer: Recognizer, host: str = "127.0.0.1", port: int = 8000, model_name: str = "default",
          shutdown_timeout: float = 30.0, **limits) -> None:
    """Serve until SIGTERM or Ctrl-C, then answer the requests in flight for at most `shutdown_timeout` s and
    cancel those left; print the service's URL (port 0: a free port) once it is bound. `limits`: create_app's
    limits, and its streaming model (`streamer`, from stream_model)."""
    config = uvicorn.Config(create_app(recognizer, model_name=model_name, **limits), host=host, port=port,
                            log_config=LOG_CONFIG, timeout_graceful_shutdown=shutdown_timeout)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: whoever can reach this machine can use the service (it has no "
                    "authentication)", host)
    socket = config.bind_socket()
    address = socket.getsockname()
    print(f"http://{f'[{host}]' if ':' in host else host}:{address[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[socket])
