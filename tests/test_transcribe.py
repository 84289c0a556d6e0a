"""`asr transcribe` as people use it: arrays through the Python API, a folder with broken files in it,
--plot, and the progress bar and --quiet on a terminal."""

import os
import pty
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_asr

import asr
from asr.core.audio import SAMPLE_RATE, AudioError, load_audio, write_audio


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """one.wav, two.wav, three.wav as espeak-ng writes them (22.05 kHz), and long.flac: the three with
    pauses, repeated to 75 s (three chunks)."""
    folder = tmp_path_factory.mktemp("transcribe")
    for name, sentence in {"one": "open the door", "two": "it is cold outside today",
                           "three": "my brother likes green apples"}.items():
        subprocess.run(["espeak-ng", "-w", str(folder / f"{name}.wav"), sentence], check=True)
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    pieces = [np.concatenate([load_audio(folder / f"{n}.wav"), pause]) for n in ("one", "two", "three")]
    long = np.concatenate(pieces * 20)
    write_audio(folder / "long.flac", long[:75 * SAMPLE_RATE])
    return folder


@pytest.fixture(scope="module")
def model():
    return asr.load_model(None, "cpu", asr.DecoderConfig("greedy"))


def same(a, b) -> None:
    assert (a.text, a.duration, a.words) == (b.text, b.duration, b.words) and a.words


def test_arrays_give_what_the_files_give(recordings, model):
    path = recordings / "two.wav"
    [from_file] = model.transcribe(path)
    samples, rate = sf.read(path, dtype="float32")
    assert rate != SAMPLE_RATE
    [at_its_rate] = model.transcribe(samples, sample_rate=rate)  # one array, resampled as load_audio does
    wave = load_audio(path)
    [from_numpy, from_tensor] = model.transcribe([wave, torch.from_numpy(wave)])
    for result in (at_its_rate, from_numpy, from_tensor):
        same(result, from_file)
    assert [from_numpy.audio_filepath, from_tensor.audio_filepath] == ["<array 0>", "<array 1>"]


def test_a_long_array_gives_what_the_long_file_gives(recordings, model):
    path = recordings / "long.flac"
    [from_file] = model.transcribe(path)  # streamed from disk in blocks, chunk by chunk
    [from_array] = model.transcribe(load_audio(path))
    same(from_array, from_file)
    assert from_file.duration == 75.0 and from_file.words[-1].end > 60


def test_a_long_file_corrupt_part_way_is_reported_and_none_of_it_is_kept(recordings, model, tmp_path):
    data = (recordings / "long.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[:len(data) * 9 // 10])  # the first chunk decodes, then it breaks
    errors = []
    results = list(model.transcribe([tmp_path / "cut.flac", recordings / "one.wav"], on_error=errors.append))
    [error] = errors
    assert error.path == str(tmp_path / "cut.flac")
    [expected] = model.transcribe(recordings / "one.wav")
    assert len(results) == 1
    same(results[0], expected)


def test_arrays_that_are_not_mono_float_audio_are_reported_and_skipped(model):
    errors = []
    results = list(model.transcribe([np.zeros((2, 16000), np.float32), np.zeros(16000, np.int16),
                                     np.array([0.1, np.nan], np.float32), np.zeros(16000, np.float32)],
                                    on_error=errors.append))
    assert [r.audio_filepath for r in results] == ["<array 3>"]
    assert all(isinstance(e, AudioError) for e in errors)
    assert [e.path for e in errors] == ["<array 0>", "<array 1>", "<array 2>"]
    assert "shape (2, 16000)" in str(errors[0]) and "int16" in str(errors[1]) and "NaN" in str(errors[2])


def test_a_folder_with_a_corrupt_and_an_empty_file(recordings, tmp_path):
    for name in ("one", "two"):
        (tmp_path / f"{name}.wav").write_bytes((recordings / f"{name}.wav").read_bytes())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "three.flac").write_bytes(b"")  # empty
    (tmp_path / "sub" / "four.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))  # corrupt
    result = run_asr("transcribe", tmp_path, "--decoder", "greedy", check=False)
    assert result.returncode == 1
    assert str(tmp_path / "sub" / "three.flac") in result.stderr and "empty" in result.stderr
    assert str(tmp_path / "sub" / "four.wav") in result.stderr and "2 file(s) could not" in result.stderr
    lines = dict(line.split("\t") for line in result.stdout.splitlines())
    assert sorted(lines) == [str(tmp_path / "one.wav"), str(tmp_path / "two.wav")] and all(lines.values())


def test_plot_writes_a_png_of_one_file(recordings, tmp_path):
    out = tmp_path / "plots" / "one.png"
    result = run_asr("transcribe", recordings / "one.wav", "--decoder", "greedy", "--plot", out)
    assert result.stdout.strip() and str(out) in result.stderr
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[:2] == (800, 1200)
    for inputs in ([recordings / "one.wav", recordings / "two.wav"], [recordings / "long.flac"]):
        refused = run_asr("transcribe", *inputs, "--plot", tmp_path / "no.png", check=False)
        assert refused.returncode == 2 and "--plot" in refused.stderr and not (tmp_path / "no.png").exists()


def on_a_terminal(*args, stdin=None) -> tuple[str, str]:
    """stdout and stderr of `asr transcribe ARGS` whose stderr is a terminal (a pseudo-terminal)."""
    controller, terminal = pty.openpty()
    with tempfile.TemporaryFile() as stdout:  # not a pipe: read only after the terminal, it could fill up
        process = subprocess.Popen([sys.executable, "-m", "asr", "transcribe", *map(str, args)],
                                   stdin=stdin, stdout=stdout, stderr=terminal)
        os.close(terminal)
        stderr = b""
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process has gone
                break
            if not data:
                break
            stderr += data
        process.wait(timeout=120)
        os.close(controller)
        stdout.seek(0)
        return stdout.read().decode(), stderr.decode(errors="replace")


def test_a_progress_bar_on_a_terminal_and_quiet_silences_it_but_not_errors(recordings, tmp_path):
    files = [recordings / "one.wav", recordings / "two.wav"]
    stdout, stderr = on_a_terminal(*files, "--decoder", "greedy")
    assert "transcribing" in stderr and "\r" in stderr and len(stdout.splitlines()) == 2
    with open(files[0], "rb") as audio:  # of unknown length
        stdout, stderr = on_a_terminal("-", "--decoder", "greedy", stdin=audio)
    assert "transcribing" in stderr and "Traceback" not in stderr and len(stdout.splitlines()) == 1
    stdout, stderr = on_a_terminal(*files, tmp_path / "missing.wav", "--decoder", "greedy", "--quiet")
    assert len(stdout.splitlines()) == 2
    assert "transcribing" not in stderr and "missing.wav" in stderr


def test_a_file_of_one_sample_that_resamples_to_none_is_transcribed_as_no_words(model, tmp_path):
    sf.write(tmp_path / "one.wav", np.array([0.5], dtype=np.float32), 44100, subtype="FLOAT")  # 16 kHz: 0.36 samples
    [result] = model.transcribe(tmp_path / "one.wav")
    assert (result.text, result.words, result.duration) == ("", [], 0.0)
