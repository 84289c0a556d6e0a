"""`asr serve` as its clients call it: the real server in a subprocess on a free loopback port, over HTTP,
with httpx, curl's form fields and the `openai` package."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from test_audio import piped_flac

import asr
from asr.core.audio import SAMPLE_RATE, load_audio, write_audio
from asr.inference.serve import length_groups
from asr.inference.writers import cues, render

TEN_SECONDS = ("the quick brown fox jumps over the lazy dog while my brother reads a long book about green apples "
               "and the cold weather outside today in the old town")
TIMEOUT = 60  # seconds for any one call


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """short.wav and ten.wav as espeak-ng writes them (22.05 kHz), and long.flac: three sentences with pauses,
    repeated to 75 s (three chunks)."""
    folder = tmp_path_factory.mktemp("serve")
    for name, sentence in {"short": "open the door", "ten": TEN_SECONDS}.items():
        subprocess.run(["espeak-ng", "-w", str(folder / f"{name}.wav"), sentence], check=True)
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    pieces = [np.concatenate([load_audio(folder / f"{n}.wav"), pause]) for n in ("short", "ten", "short")]
    write_audio(folder / "long.flac", np.concatenate(pieces * 10)[:75 * SAMPLE_RATE])
    return folder


@pytest.fixture(scope="module")
def expected(recordings):
    """What `asr transcribe` makes of each recording, with the same model and decoder as the servers."""
    model = asr.load_model(None, "cpu", asr.DecoderConfig("greedy"))
    return {path.name: transcript for path, transcript in
            zip(sorted(recordings.iterdir()), model.transcribe(sorted(recordings.iterdir())))}


@contextmanager
def running(*options):
    """`asr serve --port 0 OPTIONS` in a subprocess, its URL as `.url`, once its /health answers; ended after."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen([sys.executable, "-m", "asr", "serve", "--port", "0", "--decoder", "greedy",
                                    *options], stdout=subprocess.PIPE, stderr=log, text=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            url = process.stdout.readline().strip()
            if not url.startswith("http://127.0.0.1:"):
                log.seek(0)
                raise AssertionError(f"asr serve did not start:\n{log.read()[-3000:]}")
            wait_until(lambda: httpx.get(f"{url}/health").json()["status"] == "ok")
            process.url = url
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=TIMEOUT)


def wait_until(condition, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.TransportError:  # not listening yet
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server():
    with running("--max-upload-mb", "2", "--max-wait-ms", "300") as process:
        yield process.url


def post(url: str, path, **data) -> httpx.Response:
    files = {"file": (path.name, path.read_bytes())}
    return httpx.post(f"{url}/v1/audio/transcriptions", files=files, data=data, timeout=TIMEOUT)


def metrics(url: str) -> dict:
    return httpx.get(f"{url}/metrics", timeout=TIMEOUT).json()


def test_each_response_format_is_what_asr_transcribe_writes(server, recordings, expected):
    ten = expected["ten.wav"]
    assert ten.text and ten.words
    answer = post(server, recordings / "ten.wav")
    assert answer.status_code == 200 and answer.json() == {"text": ten.text}
    for fmt, media_type in (("text", "text/plain"), ("srt", "application/x-subrip"), ("vtt", "text/vtt")):
        answer = post(server, recordings / "ten.wav", response_format=fmt)
        assert answer.text == render(ten, fmt) and answer.headers["content-type"].startswith(media_type)
    verbose = post(server, recordings / "ten.wav", response_format="verbose_json").json()
    assert verbose["text"] == ten.text and verbose["duration"] == ten.duration
    assert verbose["words"] == [asdict(w) for w in ten.words]
    assert [s["text"] for s in verbose["segments"]] == [c.text for c in cues(ten.words)]


def test_a_long_upload_is_cut_in_chunks_as_asr_transcribe_cuts_it(server, recordings, expected):
    long = expected["long.flac"]
    verbose = post(server, recordings / "long.flac", response_format="verbose_json").json()
    assert verbose["duration"] == long.duration == 75.0 and verbose["text"] == long.text
    assert verbose["words"] == [asdict(w) for w in long.words] and long.words[-1].end > 60


def test_the_openai_client_works_unchanged(server, recordings, expected):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", timeout=TIMEOUT)
    with open(recordings / "ten.wav", "rb") as audio:
        assert client.audio.transcriptions.create(model="asr", file=audio).text == expected["ten.wav"].text
    with open(recordings / "short.wav", "rb") as audio:
        verbose = client.audio.transcriptions.create(model="asr", file=audio, response_format="verbose_json")
    assert verbose.duration == expected["short.wav"].duration
    assert [w.word for w in verbose.words] == [w.word for w in expected["short.wav"].words]
    with pytest.raises(openai.BadRequestError, match="empty.wav: is an empty file"):
        client.audio.transcriptions.create(model="asr", file=("empty.wav", b""))


def test_the_openai_client_streams_the_transcript_as_server_sent_events(server, recordings, expected):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", timeout=TIMEOUT)
    with open(recordings / "ten.wav", "rb") as audio:
        events = list(client.audio.transcriptions.create(model="asr", file=audio, stream=True))
    *deltas, done = events
    assert len(deltas) == len(expected["ten.wav"].text.split()) > 1
    assert {e.type for e in deltas} == {"transcript.text.delta"} and done.type == "transcript.text.done"
    assert "".join(e.delta for e in deltas) == done.text == expected["ten.wav"].text


def bad_uploads(tmp_path, recordings):
    """(what is sent, the status it gets, words its error message has)"""
    noise = tmp_path / "noise.wav"
    noise.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(3000))
    text = tmp_path / "notes.txt"
    text.write_text("not audio\n")
    large = tmp_path / "large.wav"  # over the server's 2 MB
    large.write_bytes((recordings / "ten.wav").read_bytes() * 7)
    (tmp_path / "empty.wav").write_bytes(b"")
    form = httpx.Request("POST", "http://x", files={"file": ("ten.wav", (recordings / "ten.wav").read_bytes())})
    truncated = dict(content=form.read()[:5000], headers={"content-type": form.headers["content-type"]})
    return [
        (dict(files={"file": ("empty.wav", b"")}), 400, "empty.wav: is an empty file"),
        (dict(files={"file": ("noise.wav", noise.read_bytes())}), 400, "noise.wav: not a readable audio file"),
        (dict(files={"file": ("notes.txt", text.read_bytes())}), 415, "notes.txt: an unsupported format"),
        (dict(files={"file": ("large.wav", large.read_bytes())}), 413, "over this service's limit of 2 MB"),
        (dict(data={"model": "asr"}), 400, "no audio: send it as the file field"),
        (dict(json={"file": "ten.wav"}), 400, "no audio: send it as the file field"),
        (dict(files={"file": ("ten.wav", b"RIFF")}, data={"response_format": "xml"}), 400, "response_format 'xml'"),
        (truncated, 400, "the multipart/form-data body is truncated: its 5000 bytes end before its closing boundary"),
        (dict(files={"file": ("ten.wav", b"RIFF")}, data={"stream": "true", "response_format": "srt"}), 400,
         "true only with response_format json or text"),
    ]


def test_bad_input_gets_a_json_error_naming_the_problem_and_the_service_goes_on(server, recordings, expected,
                                                                               tmp_path):
    errors = metrics(server)["errors"]
    for request, status, message in bad_uploads(tmp_path, recordings):
        answer = httpx.post(f"{server}/v1/audio/transcriptions", timeout=TIMEOUT, **request)
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"]["message"]
        assert httpx.get(f"{server}/health").status_code == 200
    assert metrics(server)["errors"] == errors + 9
    assert post(server, recordings / "short.wav").json()["text"] == expected["short.wav"].text


def test_an_upload_whose_header_says_it_lasts_over_the_limit_gets_413_before_it_is_decoded(recordings, expected):
    with running("--max-audio-minutes", "1") as process:
        answer = post(process.url, recordings / "long.flac")  # 75 s in 1.1 MB: within the upload limit
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["message"] == ("long.flac: 75 s of audio, over the limit of 60 s (asr serve "
                                                     "--max-audio-minutes); send a shorter recording")
        assert post(process.url, recordings / "ten.wav").json()["text"] == expected["ten.wav"].text
        assert metrics(process.url)["batched_chunks"] == 1  # the long upload never reached the model


def test_a_flac_written_to_a_pipe_is_read_to_its_end_by_the_server_and_the_cli(server, recordings, expected, tmp_path):
    piped = piped_flac(recordings / "ten.wav", tmp_path / "ten.flac", 22050)  # its header gives no length
    assert post(server, piped).json() == {"text": expected["ten.wav"].text}
    cli = subprocess.run([sys.executable, "-m", "asr", "transcribe", str(piped), "--decoder", "greedy"],
                         capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert cli.returncode == 0 and cli.stdout == expected["ten.wav"].text + "\n", cli.stderr


def silence_flac(path, seconds: int, rate: int = 384_000, channels: int = 8, piped: bool = False):
    """`seconds` of digital silence in 16-bit FLAC as sox writes it (to a pipe: no length in its header). -D: sox
    would dither it to random +-1 noise, which a model can hear as a letter now and then."""
    audio = ["-r", str(rate), "-c", str(channels), "-b", "16", "-e", "signed"]
    if piped:
        raw = subprocess.run(["sox", "-D", "-n", *audio, "-t", "raw", "-", "trim", "0", str(seconds)], check=True,
                             capture_output=True).stdout
        path.write_bytes(subprocess.run(["sox", "-t", "raw", *audio, "-", "-t", "flac", "-"], input=raw, check=True,
                                        capture_output=True).stdout)
    else:
        subprocess.run(["sox", "-D", "-n", *audio, str(path), "trim", "0", str(seconds)], check=True)
    return path


def test_eight_channels_at_384_khz_are_decoded_a_block_at_a_time_and_limited_by_their_samples(recordings, tmp_path):
    """With 6 minutes allowed (34.6 M samples x channels: 6 minutes of 48 kHz stereo), 10 s of 8 channels at
    384 kHz (30.7 M) are decoded, 20 s (61.4 M) are refused by their header, or while decoded if it gives no length;
    the server's peak memory meanwhile grows by less than half of the 123 MB that the 10 s take decoded whole (the
    uploads, 5 and 11 MB, are copied a few times as they are parsed)."""
    ten, twenty = silence_flac(tmp_path / "ten.flac", 10), silence_flac(tmp_path / "twenty.flac", 20)
    piped = silence_flac(tmp_path / "piped.flac", 20, piped=True)
    with running("--max-audio-minutes", "6") as process:
        for warm_up in (recordings / "ten.wav", silence_flac(tmp_path / "one.flac", 1)):  # first-use allocations
            assert post(process.url, warm_up).status_code == 200

        def peak_mb() -> float:
            return int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{process.pid}/status").read_text())[1]) / 1024

        before = peak_mb()
        assert post(process.url, ten).json() == {"text": ""}
        for path, message in [(twenty, "twenty.flac: 20 s of 8 channels at 384000 Hz: 61.4 M samples"),
                              (piped, "piped.flac: at least 11 s of 8 channels at 384000 Hz: 34.6 M samples")]:
            answer = post(process.url, path)
            assert answer.status_code == 413 and answer.json()["error"]["message"].startswith(message)
            assert "over the limit of 34.6 M (360 s of 48 kHz stereo) (asr serve --max-audio-minutes)" in answer.text
        assert peak_mb() - before < 60, peak_mb() - before


def test_requests_that_arrive_together_are_decoded_in_one_batch(server, recordings, expected):
    before = metrics(server)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post(server, recordings / "short.wav"), range(6)))
    assert [a.json()["text"] for a in answers] == [expected["short.wav"].text] * 6
    after = metrics(server)
    assert after["requests"] == before["requests"] + 6 and after["batched_chunks"] == before["batched_chunks"] + 6
    assert after["batches"] - before["batches"] < 6 and after["largest_batch"] > 1
    assert after["queue_depth"] == 0 and after["audio_seconds"] > before["audio_seconds"]
    assert after["audio_seconds"] == round(after["audio_seconds"], 3)  # milliseconds, no float noise


def test_concurrent_requests_decoded_by_beam_search_each_get_their_own_transcript(recordings):
    """With beam search (the default model's own decoder), whose search of one batch overlaps the network run of
    the next, each of several different uploads sent together gets its own transcript."""
    model = asr.load_model(None, "cpu")
    names = ["short.wav", "ten.wav", "long.flac", "ten.wav", "short.wav", "long.flac", "short.wav", "ten.wav"]
    want = {name: t.text for name, t in zip(sorted(set(names)), model.transcribe([recordings / n
                                                                                    for n in sorted(set(names))]))}
    assert len(set(want.values())) == 3
    with running("--decoder", "beam", "--max-wait-ms", "300") as process:
        with ThreadPoolExecutor(len(names)) as pool:
            answers = list(pool.map(lambda name: post(process.url, recordings / name), names))
        done = metrics(process.url)
    assert [a.json()["text"] for a in answers] == [want[name] for name in names]
    assert done["batches"] < done["batched_chunks"]  # some chunks shared a batch


def test_a_batch_is_run_in_groups_of_similar_length():
    assert length_groups([16000] * 4) == [[0, 1, 2, 3]]
    seconds = [2, 15, 14, 3, 2.5, 10]
    groups = length_groups([int(s * SAMPLE_RATE) for s in seconds])
    assert groups == [[1, 2, 5], [3, 4, 0]]  # longest first; 2 s is not padded to 15 s
    for group in groups:  # each pads at most a quarter of its samples
        assert max(seconds[i] for i in group) * len(group) <= 1.25 * sum(seconds[i] for i in group)


@pytest.fixture(scope="module")
def slow_server():
    """Two requests admitted at a time; a batch waits up to 3 s for requests still on their way."""
    with running("--max-queue", "2", "--max-wait-ms", "3000") as process:
        yield process.url


class HeldUpload:
    """A POST of an audio file over a socket of its own, its last bytes held back until finish()."""

    def __init__(self, url: str, path):
        files = {"file": (path.name, path.read_bytes())}
        request = httpx.Request("POST", f"{url}/v1/audio/transcriptions", files=files)
        body = request.read()
        head = ["POST /v1/audio/transcriptions HTTP/1.1", f"Host: {request.url.netloc.decode()}", "Connection: close",
                f"Content-Type: {request.headers['content-type']}", f"Content-Length: {len(body)}"]
        self.data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        self.socket = socket.create_connection((request.url.host, request.url.port), timeout=TIMEOUT)
        self.socket.sendall(self.data[:-100])

    def finish(self) -> "HeldUpload":
        self.socket.sendall(self.data[-100:])
        return self

    def answer(self) -> tuple[int, dict]:
        """The status and JSON of the answer."""
        received = b""
        while piece := self.socket.recv(1 << 16):
            received += piece
        head, body = received.split(b"\r\n\r\n", 1)
        return int(head.split()[1]), json.loads(body)

    def close(self) -> None:
        self.socket.close()


def test_a_full_queue_answers_503_with_retry_after(slow_server, recordings, expected):
    before, short = metrics(slow_server), recordings / "short.wav"
    held = HeldUpload(slow_server, short)  # still uploading: holds no slot, and the batch below waits for it
    with ThreadPoolExecutor(2) as pool:
        admitted = [pool.submit(post, slow_server, short) for _ in range(2)]
        wait_until(lambda: metrics(slow_server)["queue_depth"] == 2)
        turned_away = [post(slow_server, short) for _ in range(3)]
        assert [a.result().json() for a in admitted] == [{"text": expected["short.wav"].text}] * 2
    assert held.finish().answer() == (200, {"text": expected["short.wav"].text})
    for answer in turned_away:
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert "busy: 2 requests are being served" in answer.json()["error"]["message"]
    assert metrics(slow_server)["rejected"] == before["rejected"] + 3
    assert post(slow_server, short).json()["text"] == expected["short.wav"].text


def test_a_client_that_hangs_up_frees_its_slot(slow_server, recordings, expected):
    before = metrics(slow_server)
    held = HeldUpload(slow_server, recordings / "short.wav")  # the batch below waits for it
    gone = HeldUpload(slow_server, recordings / "long.flac").finish()
    wait_until(lambda: metrics(slow_server)["decoding"] == 1)  # its chunks wait in a batch
    gone.close()
    wait_until(lambda: metrics(slow_server)["disconnects"] == before["disconnects"] + 1)
    HeldUpload(slow_server, recordings / "ten.wav").close()  # hangs up in the middle of its upload
    wait_until(lambda: metrics(slow_server)["disconnects"] == before["disconnects"] + 2)
    assert metrics(slow_server)["queue_depth"] == 0 and metrics(slow_server)["uploading"] == 1  # the held upload
    assert held.finish().answer() == (200, {"text": expected["short.wav"].text})
    after = metrics(slow_server)
    assert after["requests"] == before["requests"] + 1 and after["errors"] == before["errors"]
    assert after["batched_chunks"] == before["batched_chunks"] + 1  # the long upload's three chunks never ran
    assert after["queue_depth"] == after["decoding"] == 0


def test_sigterm_finishes_the_requests_in_flight_then_stops(recordings, expected):
    with running("--max-wait-ms", "1500") as process:
        uploading = HeldUpload(process.url, recordings / "short.wav")
        waiting = HeldUpload(process.url, recordings / "long.flac").finish()
        wait_until(lambda: metrics(process.url)["decoding"] == 1)  # in a batch that waits for the other
        process.send_signal(signal.SIGTERM)
        assert uploading.finish().answer() == (200, {"text": expected["short.wav"].text})
        assert waiting.answer() == (200, {"text": expected["long.flac"].text})
        assert process.wait(timeout=TIMEOUT) == -signal.SIGTERM  # uvicorn ends by the signal it caught, once done
        assert process.stdout.read() == ""  # the URL was all: the access log goes to stderr, not to a full pipe


class Trickle(HeldUpload):
    """A POST that sends its upload two bytes a second, on a thread of its own, until the server answers."""

    def __init__(self, url: str, path):
        super().__init__(url, path)
        self.thread = threading.Thread(target=self.crawl, daemon=True)
        self.thread.start()

    def crawl(self) -> None:
        with contextlib.suppress(OSError):  # the server has answered and closed
            for i in range(len(self.data) - 100, len(self.data), 2):
                self.socket.sendall(self.data[i:i + 2])
                time.sleep(1)


def test_slow_uploads_hold_no_slot_and_get_408(recordings, expected):
    """16 clients sending 2 bytes a second hold neither of the 2 slots: a whole upload is served meanwhile, and
    each slow one is answered 408 once it falls behind."""
    with running("--max-queue", "2", "--upload-timeout", "4") as process:
        slow = [Trickle(process.url, recordings / "short.wav") for _ in range(16)]
        wait_until(lambda: metrics(process.url)["uploading"] == 16)
        for _ in range(3):
            assert post(process.url, recordings / "short.wav").json() == {"text": expected["short.wav"].text}
        for upload in slow:
            status, answer = upload.answer()
            assert status == 408 and "the upload stalled" in answer["error"]["message"]
        assert metrics(process.url)["timeouts"] == 16 and metrics(process.url)["uploading"] == 0


def test_sigterm_waits_for_a_slow_upload_at_most_the_shutdown_timeout(recordings):
    with running("--upload-timeout", "60", "--shutdown-timeout", "1") as process:
        slow = Trickle(process.url, recordings / "short.wav")
        wait_until(lambda: metrics(process.url)["uploading"] == 1)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == -signal.SIGTERM
        assert time.monotonic() - start < 5  # not the 60 s the upload may still take
        slow.close()
