"""The model shipped inside the package: `asr transcribe` works with nothing downloaded and no --model."""

import shutil
import subprocess

from asr.core.bundle import DEFAULT_MODEL
from asr.core.metrics import error_counts

SENTENCE = "HELLO WORLD THIS IS A TEST"


def test_the_default_model_is_installed_and_small_enough_to_ship():
    assert DEFAULT_MODEL.is_file(), f"{DEFAULT_MODEL} is missing: recipes/synthetic/run.sh install puts it there"
    shipped = sum(f.stat().st_size for f in DEFAULT_MODEL.parent.glob("default.*"))
    assert shipped <= 25 * 2**20, f"the default model and its LM take {shipped / 2**20:.1f} MB, over 25 MB"


def espeak(tmp_path, text: str):
    wav = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text.lower()], check=True)
    return wav


def run_transcribe(*args) -> subprocess.CompletedProcess:
    """The installed `asr transcribe` command, as a user runs it."""
    asr = shutil.which("asr")
    assert asr, "the `asr` command is not on the PATH: install the package (bash scripts/install.sh)"
    return subprocess.run([asr, "transcribe", *map(str, args)], capture_output=True, text=True, timeout=300)


def asr_transcribe(*args) -> str:
    result = run_transcribe(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_asr_transcribe_reads_a_fresh_espeak_recording(tmp_path):
    """The shipped model's acceptance check: espeak-ng -w hello.wav "..." && asr transcribe hello.wav, up to
    a small error (at most one character in ten)."""
    heard = asr_transcribe(espeak(tmp_path, SENTENCE))
    assert error_counts(SENTENCE, heard).cer <= 0.1, f"heard {heard!r} for {SENTENCE!r}"


def test_asr_transcribe_chooses_among_known_sentences(tmp_path):
    choices = tmp_path / "choices.txt"
    choices.write_text("hello word this is a test\nhello world this is a test\nhello world this is the best\n")
    wav = espeak(tmp_path, SENTENCE)
    assert asr_transcribe(wav, "--choices", choices) == SENTENCE
    near = tmp_path / "near.txt"  # without the sentence said: the answer is still a choice, the closest one
    near.write_text("hello word that is the best\nhello world this is a tent\n")
    assert asr_transcribe(wav, "--choices", near) == "HELLO WORLD THIS IS A TENT"
    mixed = run_transcribe(wav, "--choices", choices, "--beam-size", 5)
    assert mixed.returncode == 2 and "--beam-size is a beam-search option" in mixed.stderr


def test_beam_options_on_the_default_model_keep_its_lm():
    from asr.core.decoding import DecoderConfig
    from asr.inference.transcribe import DEFAULT_LM, load_model

    assert load_model(device="cpu").decoder_config.lm == str(DEFAULT_LM)
    assert load_model(device="cpu", decoder=DecoderConfig("beam", beam_size=8)).decoder_config.lm == str(DEFAULT_LM)
    assert load_model(device="cpu", decoder=DecoderConfig("greedy")).decoder_config.lm is None
