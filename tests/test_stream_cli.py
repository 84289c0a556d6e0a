"""`asr transcribe --stream FILE|-` and `--live`: partial and final results printed while the audio comes, from a
file (paced at real time, or --fast), a pipe or a microphone; and the errors of a missing microphone or a model that
cannot stream."""

import io
import json
import select
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import run_asr, speak

from asr.cli import main
from asr.core.audio import SAMPLE_RATE, load_audio, write_audio
from asr.core.decoding import Word
from asr.core.paths import ASSETS
from asr.inference import live
from asr.inference.streaming import StreamEvent

SILENCE = 1.5  # seconds between the two sentences


def events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-shaped enough for the random test model to emit tokens: noise bursts in silence."""
    rng = np.random.default_rng(seed)
    wave = (0.1 * rng.standard_normal(round(seconds * SAMPLE_RATE))).astype(np.float32)
    wave[(np.arange(len(wave)) // (SAMPLE_RATE // 2)) % 3 == 2] = 0  # a third of each 1.5 s silent
    return wave


@pytest.fixture(scope="module")
def three_seconds(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "noise.wav"
    write_audio(path, noise(3.0))
    return path


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory):
    """A FLAC of two sentences SILENCE s apart (0.3 s of silence before and after) -> (path, the middle of the pause
    between them in seconds)."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install.sh")
    folder = tmp_path_factory.mktemp("sentences")
    waves = []
    for i, text in enumerate(["the cat sat on the mat", "open the door and turn left"]):
        speak(text, folder / f"{i}.flac")
        waves.append(load_audio(folder / f"{i}.flac"))
    gap = np.zeros(round(SILENCE * SAMPLE_RATE), dtype=np.float32)
    edge = np.zeros(round(0.3 * SAMPLE_RATE), dtype=np.float32)
    write_audio(folder / "two.flac", np.concatenate([edge, waves[0], gap, waves[1], edge]))
    return folder / "two.flac", (len(edge) + len(waves[0]) + len(gap) / 2) / SAMPLE_RATE


@pytest.fixture
def shipped_streaming():
    if not (ASSETS / "streaming.onnx").is_file():
        pytest.skip(f"no shipped streaming model ({ASSETS / 'streaming.onnx'}) yet")
    return "streaming"


def test_endpoints_split_two_sentences_into_two_finals(shipped_streaming, two_sentences):
    path, middle = two_sentences
    got = events(run_asr("transcribe", "--stream", path, "--fast", "--format", "json").stdout)
    kinds = [e["type"] for e in got]
    assert kinds.count("final") == 2, kinds
    split = kinds.index("final")
    assert kinds[0] == "partial" and "partial" in kinds[split + 1:-1] and kinds[-1] == "final", kinds
    first, second = got[split], got[-1]
    assert first["end"] < middle + 0.3 < second["end"]  # the endpoint comes SILENCE s after the first sentence
    assert first["text"] and second["text"]
    assert first["words"] and all(0 <= w["start"] <= w["end"] <= middle for w in first["words"])
    assert second["words"] and all(middle <= w["start"] <= w["end"] for w in second["words"])
    for final in first, second:  # words inside their utterance
        assert all(final["start"] <= w["start"] and w["end"] <= final["end"] + 0.01 for w in final["words"])
    assert all(e["end"] <= first["end"] for e in got[:split])  # the first utterance's partials lie in it


def test_a_pipe_is_transcribed_as_a_file_is(streaming_onnx, three_seconds):
    from_file = run_asr("transcribe", "--stream", three_seconds, "--fast", "--format", "json", "--model",
                        streaming_onnx).stdout
    piped = subprocess.run([sys.executable, "-m", "asr", "transcribe", "--stream", "-", "--fast", "--format", "json",
                            "--model", streaming_onnx], input=three_seconds.read_bytes(), capture_output=True,
                           timeout=300)
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stdout.decode() == from_file
    assert events(from_file)[-1]["type"] == "final"


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_a_pipe_gives_events_before_it_ends(streaming_onnx, fmt):
    encoded = io.BytesIO()
    sf.write(encoded, noise(8.0), SAMPLE_RATE, format=fmt, subtype="PCM_16")
    data = encoded.getvalue()
    process = subprocess.Popen([sys.executable, "-m", "asr", "transcribe", "--stream", "-", "--fast", "--format",
                                "json", "--model", streaming_onnx, "--quiet"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        process.stdin.write(data[:len(data) // 2])
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "no event while the pipe was open"
        first = json.loads(process.stdout.readline())
        process.stdin.write(data[len(data) // 2:])
        process.stdin.close()
        rest = events(process.stdout.read().decode())
        assert process.wait(timeout=120) == 0, process.stderr.read().decode()
    finally:
        process.kill()
    assert first["end"] <= 4.1 and rest[-1]["type"] == "final" and rest[-1]["end"] > 7


def test_a_file_streams_at_real_time_unless_fast(streaming_onnx, three_seconds):
    start = time.monotonic()
    got = events(run_asr("transcribe", "--stream", three_seconds, "--format", "json", "--chunk-ms", "200",
                         "--model", streaming_onnx).stdout)
    assert time.monotonic() - start >= 0.8 * 3.0
    assert got and got[-1]["type"] == "final"


def test_ctrl_c_ends_the_stream_with_its_final(streaming_onnx, tmp_path):
    path = tmp_path / "long.wav"
    write_audio(path, noise(30.0))
    process = subprocess.Popen([sys.executable, "-m", "asr", "transcribe", "--stream", path, "--format", "json",
                                "--model", streaming_onnx], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert select.select([process.stdout], [], [], 120)[0], "no event"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    got = events(out)
    assert got[-1]["type"] == "final" and got[-1]["end"] < 20


def test_a_second_ctrl_c_ends_it_at_once_in_one_line(monkeypatch, three_seconds, capsys):
    """The first Ctrl-C lets the stream finish its utterance; a second raises KeyboardInterrupt wherever it lands,
    which asr reports in one line (exit 130, the shell's code for SIGINT) rather than a traceback."""
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("asr.cli.run_transcribe_live", interrupted)
    try:
        status = main(["transcribe", "--stream", str(three_seconds)])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped asr's main")
    assert status == 130 and capsys.readouterr().err == "asr transcribe: interrupted\n"


def has_input_device() -> bool:
    try:
        import sounddevice

        sounddevice.query_devices(kind="input")
        return True
    except Exception:
        return False


def test_live_without_a_microphone_says_so_in_one_line():
    if has_input_device():
        pytest.skip("this machine has an audio input device")
    result = run_asr("transcribe", "--live", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"asr transcribe: error: {live.NO_MICROPHONE}"]
    assert result.stdout == ""


def test_a_missing_sounddevice_or_portaudio_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import sounddevice: ModuleNotFoundError
    with pytest.raises(live.MicrophoneError, match=r"pip install 'asr\[live\]'"):
        live.microphone_chunks(0.1)
    real_import = __import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", no_portaudio)
    with pytest.raises(live.MicrophoneError, match="apt-get install libportaudio2"):
        live.microphone_chunks(0.1)


def test_a_bidirectional_model_cannot_stream(three_seconds):
    result = run_asr("transcribe", "--stream", three_seconds, "--model", "default", check=False)
    assert result.returncode == 2
    assert "not a streaming model" in result.stderr and "--model streaming" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("argv, message", [
    (["--stream", "{wav}", "--format", "srt"], "--format srt: --stream prints text"),
    (["--stream", "{wav}", "--output-dir", "out"], "--output-dir is for input files, not --stream"),
    (["--live", "--fast"], "--fast is for --stream, not --live"),
    (["{wav}", "--chunk-ms", "50"], "--chunk-ms is for --stream and --live, not input files"),
    (["--stream", "{wav}", "--batch-size", "4"], "--batch-size is for input files, not --stream"),
    (["--stream", "missing.wav"], "missing.wav: no such file"),
])
def test_misused_options_are_refused_before_a_model_loads(argv, message, three_seconds, capsys):
    assert main(["transcribe", *(a.format(wav=three_seconds) for a in argv)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["a.wav", "--stream", "b.wav"], "argument --stream: not allowed with argument INPUT"),
    (["--stream", "-", "--live"], "argument --live: not allowed with argument --stream"),
    ([], "one of the arguments INPUT --stream --live is required"),
])
def test_one_source_at_a_time(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["transcribe", *argv])
    assert exit.value.code == 2 and message in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


FINAL = StreamEvent("final", "the cat sat", 0.0, 1.2, [Word("the", 0.1, 0.2, 0.9)])
STREAM = [StreamEvent("partial", "the", 0.0, 0.3), StreamEvent("partial", "the ca", 0.0, 0.6), FINAL,
          StreamEvent("partial", "open", 2.0, 2.4)]


def test_the_text_writer_redraws_partials_on_a_terminal_and_prints_finals_only_elsewhere():
    terminal, pipe = Terminal(), io.StringIO()
    for out in terminal, pipe:
        write = live.text_writer(out)
        for event in STREAM:
            write(event)
    clear = live.CLEAR_LINE
    assert terminal.getvalue() == f"{clear}the{clear}the ca{clear}the cat sat\n{clear}open"
    assert pipe.getvalue() == "the cat sat\n"


def test_the_json_writer_prints_every_event_on_a_line():
    out = io.StringIO()
    write = live.json_writer(out)
    for event in STREAM:
        write(event)
    assert events(out.getvalue()) == [e.to_dict() for e in STREAM]
    assert events(out.getvalue())[2]["words"] == [{"word": "the", "start": 0.1, "end": 0.2, "confidence": 0.9}]


def test_a_pipe_reader_serves_libsndfile_s_look_ahead_and_return():
    data = bytes(range(256)) * 100
    reader = live.PipeReader(io.BytesIO(data), keep=1000)
    assert reader.read(10) == data[:10]
    assert reader.seek(0, 2) == live.PipeReader.UNKNOWN_END  # the length, for libsndfile: unknown
    reader.seek(20_000)  # past what arrived: as if the file ended there, and nothing more read from the pipe
    assert reader.read(4) == b"" and reader.received == 10
    reader.seek(10)
    assert reader.read(5000) == data[10:5010] and reader.tell() == 5010
    reader.seek(5)  # back into the first `keep` bytes
    assert reader.read(20) == data[5:25]
    reader.seek(4500)  # back into the last `keep` bytes read
    assert reader.read(100) == data[4500:4600]
    reader.seek(2000)
    with pytest.raises(OSError, match="cannot go back to byte 2000"):
        reader.read(10)
    reader.seek(5010)
    assert reader.read() == data[5010:] and reader.read(10) == b""
