"""`asr serve`'s live streams as clients speak them: WebSocket /v1/audio/stream on the real server in a subprocess
(tests/test_serve.py's `running`), with the websockets package's client. The tiny random streaming model's text is
gibberish, but exact: what it streams is checked against what the same model transcribes offline; the shipped
streaming model, where installed, against real speech."""

import contextlib
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import uvicorn
from conftest import run_asr, speak
from test_serve import metrics, running
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from asr.core.audio import SAMPLE_RATE, load_audio, resample, write_audio
from asr.core.decoding import DecoderConfig
from asr.core.paths import ASSETS
from asr.inference.serve import NO_STREAM_MODEL, create_app, stream_model
from asr.inference.transcribe import load_model

TIMEOUT = 30  # seconds for any one message
SHIPPED = ASSETS / "streaming.onnx"
needs_shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason=f"no shipped streaming model ({SHIPPED})")
GREEDY = DecoderConfig("greedy")  # as the servers decode (test_serve.running passes --decoder greedy)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, np.ndarray]:
    """16 kHz waveforms (S,) of espeak-ng speech, each followed by a second of silence, quantized to 16 bits (so
    that pcm_s16le and pcm_f32le carry the same samples)."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install.sh")
    folder, waves = tmp_path_factory.mktemp("speech"), {}
    for text in ("hello world", "open the door"):
        speak(text, folder / "speech.flac")
        wave = np.concatenate([load_audio(folder / "speech.flac"), np.zeros(SAMPLE_RATE, dtype=np.float32)])
        waves[text] = quantized(wave)
    return waves


def quantized(wave: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(wave, -1, 1) * 32767) / 32768).astype(np.float32)


def pcm(wave: np.ndarray, encoding: str) -> bytes:
    """Samples (S,) float32 in [-1, 1] as raw little-endian PCM."""
    if encoding == "pcm_s16le":
        return np.round(wave * 32768).clip(-32768, 32767).astype("<i2").tobytes()
    return wave.astype("<f4").tobytes()


def stream(url: str, wave: np.ndarray, rate: int = SAMPLE_RATE, encoding: str = "pcm_s16le", chunk: float = 0.1,
           pace: float = 0.0, query: str | None = None, messages=()) -> tuple[list[dict], int]:
    """Stream `wave` (S,) at `rate` in messages of `chunk` seconds, `pace` seconds apart, then `messages` (default:
    the end message): what the server sends, and its close code."""
    data = pcm(wave, encoding)
    size = round(chunk * rate) * (2 if encoding == "pcm_s16le" else 4)
    query = f"sample_rate={rate}&encoding={encoding}" if query is None else query
    with connect(f"{url.replace('http', 'ws', 1)}/v1/audio/stream?{query}", open_timeout=TIMEOUT,
                 proxy=None, max_queue=None) as ws:
        with contextlib.suppress(ConnectionClosed):  # the server may end the stream first
            for start in range(0, len(data), size):
                ws.send(data[start:start + size])
                time.sleep(pace)
            for message in messages or [json.dumps({"type": "end"})]:
                ws.send(message)
        return received(ws)


def received(ws) -> tuple[list[dict], int]:
    """The messages a stream gets until the server closes it, and the close code."""
    events = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            events.append(json.loads(ws.recv(timeout=TIMEOUT)))
    return events, ws.close_code


def finals(events: list[dict]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "final"]


def check_order(events: list[dict]) -> None:
    """A stream that ended well: partials and finals, then done; each utterance's partials before its final, with
    its start and within its span, in time order, and each final's words within its span."""
    assert events[-1] == {"type": "done"} and {e["type"] for e in events[:-1]} <= {"partial", "final"}
    partials, last_end = [], 0.0
    for event in events[:-1]:
        assert set(event) == {"type", "text", "start", "end", "words"} and event["start"] <= event["end"]
        if event["type"] == "partial":
            assert not event["words"] and event["text"]
            partials.append(event)
            continue
        assert event["start"] >= last_end
        assert all(p["start"] == event["start"] and p["end"] <= event["end"] for p in partials)
        assert [p["end"] for p in partials] == sorted(p["end"] for p in partials)
        assert " ".join(w["word"] for w in event["words"]) == event["text"]
        assert all(event["start"] <= w["start"] <= w["end"] <= event["end"] + 0.1 for w in event["words"])
        partials, last_end = [], event["end"]
    assert not partials, "partials after the last final"


def spelled(texts) -> str:
    """Texts without their spaces: the finals of a stream split its words where the speaker pauses."""
    return "".join("".join(texts).split())


@pytest.fixture(scope="module")
def tiny(streaming_onnx):
    """A server that streams with the tiny random streaming model: 2 streams at once, 6 s each."""
    with running("--stream-model", streaming_onnx, "--max-streams", "2", "--max-audio-minutes", "0.1") as process:
        yield process.url


@pytest.fixture(scope="module")
def tiny_offline(streaming_onnx):
    """The tiny model's offline transcript of a waveform at a rate, greedy as the servers decode."""
    model = load_model(streaming_onnx, decoder=GREEDY)
    return lambda wave, rate=SAMPLE_RATE: next(model.transcribe(wave, sample_rate=rate, words=False)).text


def test_int16_and_float32_streams_give_the_same_events_which_spell_the_offline_transcript(tiny, tiny_offline,
                                                                                         speech):
    wave = speech["hello world"]
    int16, code = stream(tiny, wave, encoding="pcm_s16le")
    assert code == 1000
    check_order(int16)
    assert finals(int16) and any(e["type"] == "partial" for e in int16)
    assert spelled(finals(int16)) == spelled([tiny_offline(wave)])
    float32, _ = stream(tiny, wave, encoding="pcm_f32le")
    assert float32 == int16
    once, _ = stream(tiny, wave, chunk=100)  # one message: fed a piece at a time all the same
    assert once == int16


@pytest.mark.parametrize("rate", [8000, 48000])
def test_a_stream_at_another_rate_is_resampled_as_a_whole_file_is(tiny, tiny_offline, speech, rate):
    wave = quantized(resample(speech["hello world"], SAMPLE_RATE, rate))
    before = metrics(tiny)["stream_audio_seconds"]
    events, code = stream(tiny, wave, rate=rate, encoding="pcm_f32le", chunk=0.037)
    assert code == 1000
    check_order(events)
    assert spelled(finals(events)) == spelled([tiny_offline(wave, rate)])
    assert metrics(tiny)["stream_audio_seconds"] == pytest.approx(before + len(wave) / rate, abs=1e-3)


def test_two_streams_at_once_each_get_what_they_get_alone(tiny, speech):
    waves = list(speech.values())
    alone = [stream(tiny, wave)[0] for wave in waves]
    assert alone[0] != alone[1] and all(finals(events) for events in alone)
    with ThreadPoolExecutor(2) as pool:  # 0.1 s messages 20 ms apart: the two streams overlap throughout
        together = list(pool.map(lambda wave: stream(tiny, wave, pace=0.02)[0], waves))
    assert together == alone


def bad_streams(wave: np.ndarray) -> list[tuple[dict, int, str]]:
    """(stream's arguments, the close code, words of its error message)"""
    return [
        ({"query": "sample_rate=1000"}, 1008, "4000 to 384000"),
        ({"query": "sample_rate=16k"}, 1008, "sample_rate '16k'"),
        ({"query": "encoding=mp3"}, 1008, "pcm_f32le"),
        ({"query": "samplerate=16000"}, 1008, "unknown query parameter 'samplerate'"),
        ({"messages": [b"\x00\x00\x00"]}, 1003, "3 bytes: pcm_s16le samples are 2 bytes each"),
        ({"encoding": "pcm_f32le", "messages": [np.array([0, np.nan], "<f4").tobytes()]}, 1003, "NaN"),
        ({"encoding": "pcm_f32le", "messages": [b"\x00" * 6]}, 1003, "4 bytes each"),
        ({"messages": ["hello"]}, 1003, "'hello'"),
        ({"messages": [json.dumps({"type": "stop"})]}, 1003, '{"type": "end"}'),
    ]


def test_bad_parameters_and_messages_get_an_error_event_and_the_service_goes_on(tiny, speech):
    wave = speech["hello world"][:SAMPLE_RATE // 2]
    good, _ = stream(tiny, wave)
    errors = metrics(tiny)["stream_errors"]
    for arguments, code, words in bad_streams(wave):
        events, closed = stream(tiny, wave, **arguments)
        assert closed == code and events[-1]["type"] == "error" and words in events[-1]["message"], arguments
        assert {e["type"] for e in events[:-1]} <= {"partial", "final"}  # what came before the bad message
    assert metrics(tiny)["stream_errors"] == errors + len(bad_streams(wave))
    assert stream(tiny, wave)[0] == good


def test_a_stream_past_the_audio_limit_gets_its_finals_then_an_error(tiny, speech):
    wave = np.tile(speech["hello world"], 4)[:7 * SAMPLE_RATE]  # the server takes 6 s
    before = metrics(tiny)["stream_audio_seconds"]
    events, code = stream(tiny, wave, chunk=0.5)
    assert code == 1008 and "--max-audio-minutes" in events[-1]["message"]
    assert finals(events[:-1]) and events[-2]["type"] == "final" and events[-2]["end"] <= 6.0
    assert metrics(tiny)["stream_audio_seconds"] == pytest.approx(before + 6.0)


def test_streams_past_max_streams_are_refused_until_one_closes(tiny, speech):
    url = f"{tiny.replace('http', 'ws', 1)}/v1/audio/stream"
    with connect(url, proxy=None) as first, connect(url, proxy=None) as second:
        wait_for(lambda: metrics(tiny)["streaming"] == 2)
        first.send(pcm(speech["hello world"], "pcm_s16le"))
        with connect(url, proxy=None) as third:
            events, code = received(third)
        assert code == 1013 and "--max-streams" in events[0]["message"] and len(events) == 1
        first.send(json.dumps({"type": "end"}))
        assert finals(received(first)[0])
    wait_for(lambda: metrics(tiny)["streaming"] == 0)
    assert stream(tiny, speech["hello world"])[1] == 1000


def test_a_stream_that_stops_sending_is_closed_and_frees_its_slot(streaming_onnx, speech):
    with running("--stream-model", streaming_onnx, "--max-streams", "1", "--upload-timeout", "1") as server:
        url = f"{server.url.replace('http', 'ws', 1)}/v1/audio/stream"
        with connect(url, proxy=None) as idle:
            idle.send(pcm(speech["hello world"][:1600], "pcm_s16le"))  # then nothing
            events, code = received(idle)
        assert code == 1008 and "no message for 1 s" in events[-1]["message"]
        assert metrics(server.url)["streaming"] == 0 and stream(server.url, speech["hello world"])[1] == 1000


def wait_for(condition, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_stream_model_is_the_served_one_if_it_streams_else_the_shipped_one(streaming_onnx):
    served = load_model(streaming_onnx, decoder=GREEDY)
    assert stream_model(served, str(streaming_onnx), None).recognizer is served
    default = load_model(None)  # beam search with the shipped models' LM
    shipped = stream_model(default, None, None)
    if SHIPPED.is_file():
        assert shipped.name == "streaming" and shipped.recognizer.path == SHIPPED
        assert shipped.recognizer.decode is default.decode  # the same beam search: its LM loaded once
    else:
        assert shipped.recognizer is None and shipped.missing == NO_STREAM_MODEL


def test_a_stream_model_that_cannot_stream_is_refused_at_startup():
    result = run_asr("serve", "--port", "0", "--stream-model", ASSETS / "default.onnx", check=False, timeout=120)
    assert result.returncode == 2 and "not a streaming model" in result.stderr
    assert "--stream-model streaming" in result.stderr


@contextlib.contextmanager
def in_thread(app):
    """A Starlette app served by uvicorn on a free loopback port in a thread of this process: its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server, socket = uvicorn.Server(config), config.bind_socket()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [socket]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started)
        yield f"http://127.0.0.1:{socket.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)


def test_without_a_streaming_model_streams_get_an_error_naming_the_fix_and_uploads_are_served(speech, tmp_path):
    path = tmp_path / "hello.flac"
    write_audio(path, speech["hello world"])
    with in_thread(create_app(load_model(None, decoder=GREEDY))) as url:
        events, code = stream(url, speech["hello world"])
        assert code == 1008 and events == [{"type": "error", "message": NO_STREAM_MODEL}]
        assert "--stream-model" in NO_STREAM_MODEL
        answer = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("hello.flac", path.read_bytes())},
                            timeout=TIMEOUT)
        assert answer.status_code == 200 and answer.json()["text"]
        assert httpx.get(f"{url}/health").json() == {"status": "ok", "model": "default", "stream_model": None}


@pytest.fixture(scope="module")
def shipped():
    """A server of the default model, which streams with the shipped streaming model; both decode as they do by
    default, by beam search with their LM (`running` passes --decoder greedy: the last one given counts)."""
    if not SHIPPED.is_file():
        pytest.skip(f"no shipped streaming model ({SHIPPED})")
    with running("--decoder", "beam") as process:
        yield process.url


@pytest.fixture(scope="module")
def shipped_offline():
    """The shipped streaming model's offline transcript of a waveform at a rate, decoded as the server decodes."""
    model = load_model("streaming")
    return lambda wave, rate=SAMPLE_RATE: next(model.transcribe(wave, sample_rate=rate, words=False)).text


@needs_shipped
def test_speech_streamed_in_chunks_gets_partials_then_its_final(shipped, shipped_offline, speech):
    assert httpx.get(f"{shipped}/health").json()["stream_model"] == "streaming"
    for text, wave in speech.items():
        events, code = stream(shipped, wave, chunk=0.05)
        assert code == 1000
        check_order(events)
        assert any(e["type"] == "partial" for e in events) and finals(events)
        assert spelled(finals(events)) == spelled([shipped_offline(wave)])
        assert set(text.split()) & set(" ".join(finals(events)).lower().split()), (text, finals(events))


@needs_shipped
@pytest.mark.parametrize("rate", [8000, 48000])
def test_the_shipped_model_hears_speech_at_other_rates(shipped, shipped_offline, speech, rate):
    wave = resample(speech["open the door"], SAMPLE_RATE, rate)
    events, code = stream(shipped, wave, rate=rate, encoding="pcm_f32le")
    assert code == 1000 and finals(events)
    assert spelled(finals(events)) == spelled([shipped_offline(wave, rate)])
    assert {"open", "door"} & set(" ".join(finals(events)).lower().split()), finals(events)


@needs_shipped
def test_speech_and_silence_streamed_at_once_each_get_their_own(shipped, speech):
    silence = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)
    alone = [stream(shipped, wave)[0] for wave in (speech["hello world"], silence)]
    assert finals(alone[0]) and alone[1] == [{"type": "done"}]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda wave: stream(shipped, wave, pace=0.02)[0], (speech["hello world"], silence)))
    assert together == alone
