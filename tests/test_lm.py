"""`asr lm build` and `asr tune-lm`; beam search with an LM through `asr evaluate` and `asr transcribe`."""

import json
from pathlib import Path

import pytest
import torch
from conftest import SENTENCES, run_asr
from test_decoding import emissions, spelled

from asr.core.decoding import BEAM_DEFAULTS, DecoderConfig, build_decoder, resolve_decoder
from asr.core.lm import LMError, build_lm, kenlm_tool, lexicon_path, read_lexicon, tuned_path
from asr.core.manifest import read_manifest
from asr.core.text import CharTokenizer
from asr.inference.evaluate import evaluate
from asr.inference.transcribe import load_model

needs_kenlm = pytest.mark.skipif(not (kenlm_tool("lmplz") and kenlm_tool("build_binary")),
                                 reason="KenLM's tools are not built: run scripts/build_kenlm.sh")


@pytest.fixture
def text(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text("The cat sat on the mat.\n\nthe dog's 2 bones\nTHE CAT SAT\n")
    return path


def test_kaldingram_builds_an_arpa_lm_and_its_lexicon_from_normalised_text(text, tmp_path):
    lm = build_lm([text], tmp_path / "out" / "lm.arpa", order=2, estimator="kaldingram")
    arpa = lm.read_text()
    assert arpa.startswith("\\data\\\nngram 1=") and "ngram 2=" in arpa and "ngram 3=" not in arpa
    assert "\tDOG'S\t" in arpa and "\tTWO\t" in arpa and "-99" not in arpa.split("\\1-grams:")[1].split("<s>")[1]
    assert lexicon_path(lm).read_text().splitlines()[:3] == ["BONES B O N E S |", "CAT C A T |", "DOG'S D O G ' S |"]
    assert read_lexicon(lexicon_path(lm)) == ["BONES", "CAT", "DOG'S", "MAT", "ON", "SAT", "THE", "TWO"]


@needs_kenlm
def test_kenlm_builds_arpa_and_binary_lms_that_decode_alike(text, tmp_path):
    arpa = build_lm([text], tmp_path / "lm.arpa", order=3, estimator="kenlm")
    binary = build_lm([text], tmp_path / "lm.bin", order=3, estimator="kenlm")
    assert arpa.read_text().startswith("\\data\\") and binary.read_bytes().startswith(b"mmap lm ")
    chars = CharTokenizer()
    log_probs = emissions(chars, spelled("THE KAT SAT", {9: {"K": 0.5, "C": 0.4}}))
    texts = []
    for lm in (arpa, binary):
        decoder = build_decoder(chars, resolve_decoder(DecoderConfig(lm=str(lm))))
        ids = decoder(log_probs[None], torch.tensor([len(log_probs)]))
        texts.append(chars.decode(ids[0]))
    assert texts == ["THE CAT SAT"] * 2


@needs_kenlm
def test_rebuilding_an_lm_drops_stale_tuned_weights_and_a_failed_build_keeps_the_old_lm(text, tmp_path):
    lm = build_lm([text], tmp_path / "lm.arpa", order=2, estimator="kenlm")
    tuned_path(lm).write_text('{"lm_weight": 3.0, "word_score": 1.0}')
    before = build_lm([text], lm, order=2, estimator="kenlm").read_text()
    assert not tuned_path(lm).exists()
    with pytest.raises(LMError, match="missing.txt"):  # fails while lmplz is reading the text
        build_lm([text, tmp_path / "missing.txt"], lm, order=2, estimator="kenlm")
    assert lm.read_text() == before


def test_lm_build_errors_name_the_problem(text, tmp_path, monkeypatch):
    with pytest.raises(LMError, match=r"missing\.txt: cannot read the text"):
        build_lm([tmp_path / "missing.txt"], tmp_path / "lm.arpa")
    (tmp_path / "empty.txt").write_text("\n ... \n")
    with pytest.raises(LMError, match=r"no words in .*empty\.txt"):
        build_lm([tmp_path / "empty.txt"], tmp_path / "lm.arpa")
    with pytest.raises(LMError, match="order must be at least 2"):  # unigram LMs do not load in flashlight
        build_lm([text], tmp_path / "lm.arpa", order=1)
    with pytest.raises(LMError, match="unknown estimator 'srilm'"):
        build_lm([text], tmp_path / "lm.arpa", estimator="srilm")
    monkeypatch.setattr("asr.core.lm.kenlm_tool", lambda name: None)
    with pytest.raises(LMError, match=r"lm\.bin: a binary LM needs KenLM's build_binary.*scripts/build_kenlm\.sh"):
        build_lm([text], tmp_path / "lm.bin")
    with pytest.raises(LMError, match=r"lmplz is not on the PATH.*--estimator kaldingram"):
        build_lm([text], tmp_path / "lm.arpa", estimator="kenlm")
    assert not (tmp_path / "lm.arpa").exists() and not (tmp_path / "lm.bin").exists()


@pytest.fixture(scope="module")
def half_trained(librispeech_tree, tmp_path_factory) -> tuple[Path, Path]:
    """(bundle, manifest): the tiny model trained on the 20 sentences until it spells most words right."""
    out = tmp_path_factory.mktemp("half_trained")
    run_asr("prepare", "librispeech", librispeech_tree, out)
    manifest = out / "train-tiny.jsonl"
    run_asr("train", "tiny", f"data.train_manifests=[{manifest}]", f"data.val_manifests=[{manifest}]",
            f"exp_dir={out / 'exp'}", "trainer.max_epochs=35", "trainer.enable_progress_bar=false")
    return out / "exp" / "model.safetensors", manifest


def wer(recognizer, manifest: Path, decoder: DecoderConfig) -> float:
    recognizer.set_decoder(decoder)
    return evaluate(recognizer, read_manifest(manifest)).counts.wer


@pytest.mark.slow
def test_lm_build_tune_evaluate_and_transcribe_with_timed_words(half_trained, librispeech_tree, tmp_path):
    model, manifest = half_trained
    (tmp_path / "text.txt").write_text("\n".join(SENTENCES) + "\n")
    lm = tmp_path / "lm.arpa"
    assert run_asr("lm", "build", tmp_path / "text.txt", "--order", 3, "--out", lm).stdout.strip() == str(lm)

    recognizer = load_model(model, "cpu")
    greedy, beam = wer(recognizer, manifest, DecoderConfig("greedy")), wer(recognizer, manifest, DecoderConfig("beam"))
    with_lm = wer(recognizer, manifest, DecoderConfig("beam", lm=str(lm)))
    assert with_lm <= 0.75 * greedy and beam == pytest.approx(greedy, abs=0.05), (greedy, beam, with_lm)

    tuned = json.loads(run_asr("tune-lm", "--model", model, "--manifest", manifest, "--lm", lm,
                               "--lm-weights", "0.5,2", "--word-scores", "0,1", "--jobs", 2, "--format", "json").stdout)
    assert tuned["points"] == 4 and tuned["wer"] <= with_lm and tuned["greedy_wer"] == pytest.approx(greedy)
    assert tuned["beam_size"] == BEAM_DEFAULTS["beam_size"]  # the beam it was tuned at: evaluate's and transcribe's
    assert json.loads(lm.with_suffix(".tuned.json").read_text())["lm_weight"] == tuned["lm_weight"]
    scores = json.loads(run_asr("evaluate", "--model", model, manifest, "--lm", lm, "--format", "json").stdout)
    assert scores["wer"] == pytest.approx(tuned["wer"])  # evaluate picks the tuned values up

    out = run_asr("transcribe", "--model", model, librispeech_tree, "--lm", lm, "--format", "json")
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 20 and sum(line["text"] in SENTENCES for line in lines) >= 14
    for line in lines:
        assert " ".join(w["word"] for w in line["words"]) == line["text"]
        times = [t for w in line["words"] for t in (w["start"], w["end"])]
        assert times == sorted(times) and 0 <= times[0] and times[-1] <= line["duration"], line
        assert all(0 < w["confidence"] <= 1 for w in line["words"])

    out = run_asr("transcribe", "--model", model, librispeech_tree, "--lm", tmp_path / "nope.bin", check=False)
    assert out.returncode == 2 and "nope.bin: cannot read the language model" in out.stderr and not out.stdout
