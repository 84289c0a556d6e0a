"""The model shipped inside the package: `asr transcribe` works with nothing downloaded and no --model."""

import json
import os
import subprocess
import sys
from pathlib import Path

from asr.core.paths import DEFAULT_MODEL, DEFAULT_ONNX
from asr.inference.network import info_path
from asr.core.metrics import error_counts

SENTENCE = "HELLO WORLD THIS IS A TEST"
STREAMING = DEFAULT_MODEL.with_name("streaming.safetensors")


def test_the_default_model_is_installed_and_small_enough_to_ship():
    """All of asr/assets/default.* (bundle, ONNX export, LM, lexicon) within 40 MB, and the ONNX export no larger
    than the float16 bundle and its float32 front-end: its float16 weights are stored as float16."""
    for path in (DEFAULT_MODEL, DEFAULT_ONNX, info_path(DEFAULT_ONNX)):
        assert path.is_file(), f"{path} is missing: recipes/natural/run.sh install puts it there"
    shipped = sum(f.stat().st_size for f in DEFAULT_MODEL.parent.glob("default.*"))
    assert shipped <= 40 * 2**20, f"the default model, its export and its LM take {shipped / 2**20:.1f} MB, over 40"
    assert DEFAULT_ONNX.stat().st_size <= 1.15 * DEFAULT_MODEL.stat().st_size


def espeak(tmp_path, text: str):
    wav = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text.lower()], check=True)
    return wav


def run_transcribe(*args) -> subprocess.CompletedProcess:
    """The installed `asr transcribe` command of the Python running the tests, as a user runs it."""
    asr = Path(sys.executable).with_name("asr")
    assert asr.is_file(), f"no `asr` command beside {sys.executable}: install the package (bash scripts/install.sh)"
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


def test_the_default_model_decodes_alike_however_it_is_named(tmp_path):
    """None, "default" and its path (absolute or relative) are one model: beam search with the LM beside it."""
    from asr.core.decoding import DecoderConfig
    from asr.inference.transcribe import load_model

    wav = espeak(tmp_path, SENTENCE)
    names = [None, "default", DEFAULT_MODEL, os.path.relpath(DEFAULT_MODEL)]
    recognizers = [load_model(name, "cpu") for name in names]
    config = recognizers[0].decoder_config
    assert (config.kind, config.lm) == ("beam", str(DEFAULT_MODEL.with_suffix(".lm.bin")))
    assert [r.decoder_config for r in recognizers] == [config] * len(names)
    texts = [next(r.transcribe(wav, words=False)).text for r in recognizers]
    assert texts == [texts[0]] * len(names) and error_counts(SENTENCE, texts[0]).cer <= 0.1, texts
    assert load_model(DEFAULT_MODEL, "cpu", DecoderConfig("greedy")).decoder_config == DecoderConfig("greedy")


def test_the_streaming_model_shares_the_lm_with_weights_tuned_for_it():
    from asr.core.decoding import resolve_decoder
    from asr.core.lm import own_tuned_path

    own = json.loads(own_tuned_path(STREAMING).read_text())  # asr/assets/streaming.lm.tuned.json
    assert own["model"].startswith("exp/natural-streaming"), own  # tuned for it, not copied from the default's
    for model in (STREAMING, STREAMING.with_suffix(".onnx")):
        config = resolve_decoder(None, model)
        assert config.lm == str(DEFAULT_MODEL.with_suffix(".lm.bin"))
        assert (config.lm_weight, config.word_score) == (own["lm_weight"], own["word_score"])
