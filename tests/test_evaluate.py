"""Scoring manifests with `asr evaluate` and `asr tune-lm`: each manifest line is an utterance of its own, also
when two lines name the same audio file; both decode the log-probs of one path, a recording over 30 s in chunks;
a manifest with nothing to score is an error, not a WER of 0%."""

import json

import pytest
import numpy as np
import torch
from conftest import speak, tone

from asr.cli import main
from asr.core.audio import SAMPLE_RATE, load_audio, write_audio
from asr.core.bundle import save_bundle
from asr.core.decoding import DecoderConfig
from asr.core.lm import build_lm
from asr.core.manifest import read_manifest
from asr.core.model import DeepSpeech2
from asr.core.text import CharTokenizer
from asr.inference.evaluate import evaluate
from asr.inference.transcribe import load_model
from asr.inference.tuning import dev_log_probs, transcripts, tune
from asr.training.config import load_experiment_config

torch.set_num_threads(1)
TEXTS = ["ONE TWO THREE FOUR FIVE", "SIX", "SEVEN EIGHT"]


@pytest.fixture
def setup(tmp_path):
    """(a tiny random model's bundle, a manifest of three lines: the first and the last name the same file)."""
    torch.manual_seed(0)
    model = save_bundle(tmp_path / "tiny.safetensors", DeepSpeech2(load_experiment_config("tiny").model).eval(),
                        CharTokenizer())
    for name in ("a.wav", "b.wav"):
        write_audio(tmp_path / name, tone(seconds=1.0))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": audio, "duration": 1.0, "text": text}) + "\n"
                                for audio, text in zip(["a.wav", "b.wav", "a.wav"], TEXTS)))
    return model, manifest


def test_evaluate_scores_each_manifest_line_against_its_own_text(setup, tmp_path, capsys):
    model, manifest = setup
    code = main(["evaluate", str(manifest), "--model", str(model), "--device", "cpu", "--format", "json",
                 "--out", str(tmp_path / "r.jsonl")])
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [row["reference"] for row in rows] == TEXTS
    assert [row["words"] for row in rows] == [5, 1, 2]
    assert json.loads(capsys.readouterr().out)["words"] == 8


def test_tune_lm_takes_each_manifest_line_as_its_own_utterance(setup):
    model, manifest = setup
    assert dev_log_probs(load_model(model, "cpu"), read_manifest(manifest)).references == TEXTS


def test_evaluate_refuses_an_empty_manifest(setup, tmp_path, capsys):
    model, manifest = setup
    (tmp_path / "empty.jsonl").write_text("\n")
    code = main(["evaluate", str(manifest), str(tmp_path / "empty.jsonl"), "--model", str(model), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert f"asr evaluate: error: {tmp_path / 'empty.jsonl'}: no utterances in the manifest, nothing to score" in err


@pytest.mark.parametrize("audio, cause", [
    (None, "no audio file could be read; the first: {folder}/gone-0.wav: no such file"),  # before the model loads
    ("this is a text file, not a recording\n" * 50, "no audio file could be read"),  # found as it is decoded
])
def test_evaluate_refuses_a_manifest_none_of_whose_audio_can_be_scored(setup, tmp_path, capsys, audio, cause):
    model, _ = setup
    manifest = tmp_path / "gone.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"gone-{i}.wav", "duration": 1.0, "text": "HI"}) + "\n"
                                for i in range(2)))
    for i in range(2 if audio else 0):
        (tmp_path / f"gone-{i}.wav").write_text(audio)
    code = main(["evaluate", str(manifest), "--model", str(model), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    refusal = f"asr evaluate: error: {manifest}: none of its 2 utterances could be scored ({cause}"
    assert refusal.format(folder=tmp_path) in err, err


def test_evaluate_warns_about_and_counts_empty_references_and_scores_the_rest(setup, tmp_path, capsys):
    model, manifest = setup
    texts = {"a.wav": "", "b.wav": "SIX", "c.wav": " -- "}  # "--" is empty once normalised
    (tmp_path / "c.wav").write_bytes((tmp_path / "a.wav").read_bytes())
    manifest.write_text("".join(json.dumps({"audio_filepath": audio, "duration": 1.0, "text": text}) + "\n"
                                for audio, text in texts.items()))
    code = main(["evaluate", str(manifest), "--model", str(model), "--device", "cpu", "--format", "json"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 0 and report["words"] == 1 and report["utterances"] == 1 and report["no_reference"] == 2
    for name, text in texts.items():
        assert (f"not scored: {tmp_path / name}: its reference text {text!r} is empty once normalised" in err) == (
            name != "b.wav")
    manifest.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": ""}) + "\n")
    assert main(["evaluate", str(manifest), "--model", str(model), "--device", "cpu"]) == 2
    assert "none of its 1 utterances could be scored (every reference text is empty)" in capsys.readouterr().err


LONG = ["OPEN THE DOOR", "IT IS COLD OUTSIDE TODAY", "MY BROTHER LIKES GREEN APPLES"]


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """(a manifest naming long.flac twice with two references, an LM of LONG): long.flac is LONG said by
    espeak-ng with pauses, repeated to 35 s, which asr decodes in two chunks."""
    folder = tmp_path_factory.mktemp("long")
    pieces = []
    for n, sentence in enumerate(LONG):
        speak(sentence, folder / f"{n}.flac")
        pieces.append(np.concatenate([load_audio(folder / f"{n}.flac"), np.zeros(SAMPLE_RATE // 2, np.float32)]))
    write_audio(folder / "long.flac", np.concatenate(pieces * 10)[:35 * SAMPLE_RATE])
    manifest = folder / "long.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": "long.flac", "duration": 35.0, "text": text}) + "\n"
                                for text in (" ".join(LONG * 6), LONG[0])))
    (folder / "text.txt").write_text("\n".join(LONG) + "\n")
    return manifest, build_lm([folder / "text.txt"], folder / "lm.arpa", order=2, estimator="kaldingram")


def test_tune_lm_decodes_what_evaluate_scores_on_a_recording_over_30_s(long_recording):
    manifest, lm = long_recording
    utterances = read_manifest(manifest)
    weights = (1.0, 0.5)
    recognizer = load_model(None, "cpu", DecoderConfig(lm=str(lm), lm_weight=weights[0], word_score=weights[1]))
    report = evaluate(recognizer, utterances)
    assert [row["words"] for row in report.rows] == [6 * 13, 3]  # both lines of one file, each with its own text
    dev = dev_log_probs(recognizer, utterances)
    assert [len(chunks) for chunks in dev.log_probs] == [2, 2]  # in chunks, as evaluate decodes it
    tuned = recognizer.decode.reweighted(*weights)
    assert transcripts(tuned, dev, recognizer.tokenizer) == [row["hypothesis"] for row in report.rows]
    [trial] = tune(recognizer.decode, dev, [weights], jobs=1)
    assert trial.counts == report.counts and report.rows[0]["word_errors"] <= 10
