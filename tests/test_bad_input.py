"""Bad and awkward audio through the whole transcription path: each bad file is reported by name with its
cause while the other files of the same call are transcribed; awkward but valid audio gives a right result."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import non_finite, tone

from asr.cli import main
from asr.core.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio, write_audio
from asr.core.bundle import save_bundle
from asr.core.decoding import DecoderConfig
from asr.core.model import DeepSpeech2
from asr.core.text import CharTokenizer
from asr.inference.torch_network import TorchNetwork
from asr.inference.transcribe import Recognizer, load_model
from asr.training.config import load_experiment_config

torch.set_num_threads(1)


def flac_cut(fraction):
    """A FLAC file keeping only the first `fraction` of its bytes."""
    def write(path):
        write_audio(path, tone(seconds=2.0))
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
    return write


def flac_corrupted(path):
    """A FLAC file whose middle half is overwritten with random bytes."""
    write_audio(path, tone(seconds=2.0))
    data = bytearray(path.read_bytes())
    n = len(data)
    data[n // 4 : 3 * n // 4] = np.random.default_rng(0).bytes(3 * n // 4 - n // 4)
    path.write_bytes(bytes(data))


# file name -> (how to make it, the cause its error must give)
BAD = {
    "empty.wav": (lambda p: p.write_bytes(b""), "is an empty file"),
    "zero-length.wav": (lambda p: sf.write(p, np.zeros(0, np.float32), SAMPLE_RATE), "contains no audio samples"),
    "truncated-header.flac": (flac_cut(0.01), "not a readable audio file"),
    "truncated-data.flac": (flac_cut(0.5), "not a readable audio file"),
    "corrupt.flac": (flac_corrupted, "not a readable audio file"),
    "text.wav": (lambda p: p.write_text("this is a text file, not a recording\n" * 50), "not a readable audio file"),
    "folder.wav": (lambda p: p.mkdir(), "is a directory"),
    "nan.wav": (non_finite(np.nan), "contains NaN or infinite samples"),
    "inf.wav": (non_finite(-np.inf), "contains NaN or infinite samples"),
    "noise.mp3": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(20000)), "not a readable audio file "
                  "(named .mp3, but it starts with neither an ID3 tag nor an MPEG audio frame)"),
    "gone.wav": (lambda p: p.symlink_to(p.with_name("missing.wav")), "a symbolic link to "),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A randomly initialised tiny model, as a Recognizer and as a bundle file: only the path matters here."""
    torch.manual_seed(0)
    model = DeepSpeech2(load_experiment_config("tiny").model).eval()
    bundle = save_bundle(tmp_path_factory.mktemp("model") / "tiny.safetensors", model, CharTokenizer())
    return Recognizer(TorchNetwork(model, CharTokenizer())), bundle


@pytest.fixture
def good(tmp_path):
    """Two readable files."""
    paths = [tmp_path / "good-1.wav", tmp_path / "good-2.flac"]
    for path in paths:
        write_audio(path, tone(seconds=1.0))
    return paths


@pytest.mark.parametrize("name", BAD)
def test_a_bad_file_is_named_with_its_cause_and_the_others_are_transcribed(tiny, good, tmp_path, name):
    make, cause = BAD[name]
    bad = tmp_path / name
    make(bad)
    errors = []
    results = list(tiny[0].transcribe([good[0], bad, good[1]], batch_size=2, on_error=errors.append))
    assert [r.audio_filepath for r in results] == [str(good[0]), str(good[1])]
    assert all(r.duration == 1.0 for r in results)
    assert len(errors) == 1 and isinstance(errors[0], AudioError)
    assert str(bad) in str(errors[0]) and cause in str(errors[0])


def test_asr_transcribe_reports_every_bad_file_and_transcribes_the_rest(tiny, good, tmp_path, capsys):
    folder = good[0].parent
    for name, (make, _) in BAD.items():
        make(folder / name)
    # in a folder, a directory named .wav and a broken link are reported as when named on their own
    code = main(["transcribe", str(folder), "--model", str(tiny[1]), "--device", "cpu", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    transcribed = [line.split("\t")[0] for line in out.splitlines()]
    assert transcribed == [str(p) for p in sorted(good)]
    for name, (_, cause) in BAD.items():
        assert f"{folder / name}: {cause}" in err, name
    assert f"{len(BAD)} file(s) could not be transcribed" in err


def test_random_bytes_named_mp3_are_refused_and_the_decoder_prints_nothing(tiny, tmp_path, capfd):
    BAD["noise.mp3"][0](tmp_path / "noise.mp3")
    code = main(["transcribe", str(tmp_path / "noise.mp3"), "--model", str(tiny[1]), "--device", "cpu", "--quiet"])
    err = capfd.readouterr().err  # the process's stderr: mpg123 writes its notes there, past Python
    skipped = f"asr transcribe: skipped {tmp_path / 'noise.mp3'}: {BAD['noise.mp3'][1]}; if it is damaged, re-export"
    assert code == 1 and err.splitlines() == [f"{skipped} or remove it", "asr transcribe: 1 file(s) could not be "
                                                                         "transcribed"]


# reads the file named on the command line as the user nobody when run as root (who may read any file)
READ_AS_NOBODY = """
import os, sys
from asr.core.audio import AudioError, load_audio
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
try:
    load_audio(sys.argv[1])
except AudioError as err:
    print(err)
"""


def test_a_file_the_user_may_not_read_is_reported_as_permission_denied():
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)  # others may look inside, as in a shared folder
        path = Path(folder) / "private.wav"
        write_audio(path, tone())
        path.chmod(0)
        done = subprocess.run([sys.executable, "-c", READ_AS_NOBODY, str(path)], capture_output=True, text=True,
                              timeout=120, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"{path}: permission denied: this user may not read the file (check its permissions)"


def test_file_names_with_a_tab_or_newline_give_one_escaped_line_each(tiny, tmp_path, capsys):
    names = ["new\nline.wav", "tab\there.wav", "back\\slash.wav", "plain.wav"]
    for name in names:
        write_audio(tmp_path / name, tone())
    code = main(["transcribe", *(str(tmp_path / n) for n in names), "--model", str(tiny[1]), "--device", "cpu",
                 "--quiet"])
    lines = capsys.readouterr().out.split("\n")
    assert code == 0 and lines[-1] == "" and len(lines) == len(names) + 1
    assert [line.split("\t")[0] for line in lines[:-1]] == [
        f"{tmp_path}/new\\nline.wav", f"{tmp_path}/tab\\there.wav", f"{tmp_path}/back\\\\slash.wav",
        f"{tmp_path}/plain.wav"]


def test_output_dir_files_are_replaced_whole_never_truncated_in_place(tiny, good, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "good-1.txt").write_text("the previous transcript\n")
    with (out / "good-1.txt").open() as reader:  # opened before the run, as by a program watching the folder
        code = main(["transcribe", str(good[0]), "--output-dir", str(out), "--model", str(tiny[1]), "--device",
                     "cpu", "--quiet"])
        assert reader.read() == "the previous transcript\n"  # the old file, whole, for whoever holds it
    [result] = tiny[0].transcribe([good[0]])
    assert code == 0 and (out / "good-1.txt").read_text() == result.text + "\n"
    assert [p.name for p in out.iterdir()] == ["good-1.txt"]  # no temporary file left behind


def test_eight_channels_at_96_khz_are_averaged_and_resampled(tiny, tmp_path):
    path = tmp_path / "8ch-96k.wav"
    channels = np.stack([tone(300 + 100 * c, 1.5, 96000) for c in range(8)], axis=1)  # (S, 8)
    sf.write(path, channels, 96000, subtype="PCM_24")
    wave = load_audio(path)
    expected = load_audio_mean(channels)
    assert len(wave) == int(1.5 * SAMPLE_RATE)
    assert np.allclose(wave[2000:-2000], expected[2000:-2000], atol=2e-3, rtol=0)
    [result] = tiny[0].transcribe([path])
    assert result.duration == 1.5


def load_audio_mean(channels: np.ndarray) -> np.ndarray:
    """The 16 kHz mono reference for 96 kHz channels (S, C): their mean, every 6th sample of a band-limited
    signal (all tones here lie far below 8 kHz)."""
    return channels.mean(axis=1)[::6].astype(np.float32)


@pytest.mark.parametrize("seconds", [1 / SAMPLE_RATE, 0.01, 0.05])
def test_very_short_audio_gives_at_most_its_output_steps_of_text(tiny, tmp_path, seconds):
    path = tmp_path / "short.wav"
    write_audio(path, tone(seconds=seconds))
    [result] = tiny[0].transcribe([path])
    assert result.duration == round(seconds, 3)
    assert len(result.text.replace(" ", "")) <= 1  # 0.05 s is one output step of the tiny model, less is none


@pytest.fixture(scope="module")
def default_model():
    return load_model(None, "cpu", DecoderConfig("greedy"))


def test_silence_gives_empty_text(default_model, tmp_path):
    files = [tmp_path / "silence.wav", tmp_path / "silence.flac"]
    for path in files:
        write_audio(path, np.zeros(3 * SAMPLE_RATE, np.float32))
    assert [(t.text, t.duration) for t in default_model.transcribe(files)] == [("", 3.0), ("", 3.0)]


def test_clipped_speech_is_still_recognized(default_model, tmp_path):
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install.sh")
    sentence = "hello world this is a test"
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "clean.wav"), sentence], check=True)
    wave = load_audio(tmp_path / "clean.wav")
    clipped = np.clip(8 * wave, -1, 1)  # 8x too loud: most of the speech sits on the rails
    assert (np.abs(clipped) == 1).mean() > 0.05
    write_audio(tmp_path / "clipped.wav", clipped)
    clean, loud = (t.text for t in default_model.transcribe([tmp_path / "clean.wav", tmp_path / "clipped.wav"]))
    assert jiwer.cer(sentence.upper(), loud) <= 0.25
    assert jiwer.cer(sentence.upper(), clean) <= 0.1


def three_hour_wav(path, hours=3.0):
    """A 16-bit 16 kHz WAV of `hours` of silence, written as a sparse file: its header, then a hole."""
    frames = int(hours * 3600 * SAMPLE_RATE)
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
        f.write(np.zeros(1, np.int16))
    header = path.read_bytes()[:-2]
    data_at = header.index(b"data")
    header = bytearray(header)
    header[4:8] = (len(header) - 8 + 2 * frames).to_bytes(4, "little")  # RIFF size
    header[data_at + 4 : data_at + 8] = (2 * frames).to_bytes(4, "little")  # data size
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + 2 * frames)  # zeros on disk cost nothing
    return frames


def test_a_three_hour_file_is_measured_from_its_header(tmp_path):
    path = tmp_path / "three-hours.wav"
    frames = three_hour_wav(path)
    assert audio_duration(path) == frames / SAMPLE_RATE == 3 * 3600
    with sf.SoundFile(path) as f:  # the hole reads back as silence
        f.seek(frames // 2)
        assert not f.read(SAMPLE_RATE).any()


# what an input is -> (how to make it under a folder, the cause its error must name): issue 31, item 14
NOT_AUDIO_FILES = {
    "fifo": (lambda folder: os.mkfifo(folder / "pipe.wav") or folder / "pipe.wav",
             "is a named pipe (FIFO), not a regular file; asr reads audio files, or audio on standard input"),
    "device": (lambda folder: Path("/dev/null"), "is a character device, not a regular file"),
    "folder without audio": (lambda folder: (folder / "notes").mkdir() or (folder / "notes" / "a.txt").touch()
                             or folder / "notes", "is a directory with no audio files in it (none named .wav,"),
    "pattern matching nothing": (lambda folder: folder / "calls" / "*.flac", "no file matches this pattern"),
}


@pytest.mark.parametrize("kind", NOT_AUDIO_FILES)
def test_an_input_that_is_no_audio_file_is_named_with_its_real_cause(tiny, tmp_path, capsys, kind):
    make, cause = NOT_AUDIO_FILES[kind]
    path = make(tmp_path)
    code = main(["transcribe", str(path), "--model", str(tiny[1]), "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and len(err) == 2 and err[0].startswith(f"asr transcribe: skipped {path}: {cause}"), err


# runs asr's command line and prints its exit status and whether torch was imported
STATUS_AND_TORCH = ("import sys; from asr.cli import main; code = main(sys.argv[1:]); "
                    "print(code, 'torch' in sys.modules)")


@pytest.mark.parametrize("argv, status, message", [
    (["transcribe", "{missing}"], 1, "asr transcribe: skipped {missing}: no such file (check the path)"),
    (["transcribe", "{missing}", "{missing}"], 1, "asr transcribe: 2 file(s) could not be transcribed"),
    (["transcribe", "{wav}", "--model", "{missing}"], 2, "asr transcribe: error: {missing}: no such model file"),
    (["evaluate", "{manifest}"], 2, "asr evaluate: error: {manifest}: none of its 1 utterances could be scored (no "
                                    "audio file could be read; the first: {missing}: no such file (check the path))"),
])
def test_a_missing_file_is_reported_before_torch_is_imported(tmp_path, argv, status, message):
    files = {"missing": tmp_path / "missing.wav", "wav": tmp_path / "a.wav", "manifest": tmp_path / "m.jsonl"}
    files["wav"].write_bytes(b"RIFF")
    files["manifest"].write_text('{"audio_filepath": "missing.wav", "duration": 1.0, "text": "HI"}\n')
    done = subprocess.run([sys.executable, "-c", STATUS_AND_TORCH, *(arg.format(**files) for arg in argv)],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == [str(status), "False"], done.stderr[-3000:]
    assert message.format(**files) in done.stderr
