"""The synthetic corpus generator: a few dozen espeak-ng utterances in LibriSpeech's layout."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from asr.core.text import normalize
from asr.corpora.librispeech import prepare_librispeech
from asr.corpora.synth import (
    BAND_HIGH_HZ,
    RESERVED_VOICES,
    SAMPLE_RATE,
    SPEAKER_PITCH,
    SPLITS,
    Job,
    Speaker,
    Voice,
    apply_effects,
    available_voices,
    pitch_effect,
    report_failures,
    synthesize_corpus,
)

HOURS = 0.02  # 72 s over the three splits: about 30 utterances
OPTIONS = dict(voices=["espeak-ng"], augment_share=0.5, dev_share=0.2, test_share=0.2)
SUBJECTS = ["The old man", "A young girl", "My brother", "Our teacher", "The tired farmer", "Her cat"]
VERBS = ["opened", "painted", "carried", "found", "sold", "watched"]
OBJECTS = ["the red door", "a small boat", "three apples", "the heavy box", "twelve letters", "the garden gate"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    """216 distinct sentences plus duplicates (after normalisation) and lines too short to keep."""
    lines = [f"{s} {v} {o}." for s in SUBJECTS for v in VERBS for o in OBJECTS]
    lines += ["THE OLD MAN OPENED THE RED DOOR", "the old man, opened the red door!", "Hello", "", "Yes no"]
    path = tmp_path_factory.mktemp("text") / "sentences.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_corpus(text_file: Path, out: Path, seed: int, jobs: int = 2) -> dict[str, Path]:
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install_tts.sh")
    return synthesize_corpus([text_file], out, HOURS, seed=seed, jobs=jobs, **OPTIONS)


@pytest.fixture(scope="module")
def corpus(text_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    manifests = make_corpus(text_file, out, seed=3)
    assert manifests == {split: out / f"{split}.jsonl" for split in SPLITS}
    return out


def rows(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def audio_digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*.flac")}


def test_layout_and_transcripts(corpus, text_file):
    sentences = {normalize(line) for line in text_file.read_text().splitlines()}
    for split in SPLITS:
        manifest = {r["audio_filepath"]: r for r in rows(corpus, split)}
        flacs = sorted((corpus / split).rglob("*.flac"))
        assert flacs and len(flacs) == len(manifest)
        for flac in flacs:
            speaker, chapter = flac.parent.parent.name, flac.parent.name
            assert re.fullmatch(rf"{speaker}-{chapter}-\d{{4}}\.flac", flac.name)
            assert flac.relative_to(corpus).parts[0] == split
        for trans in (corpus / split).rglob("*.trans.txt"):
            assert trans.name == f"{trans.parent.parent.name}-{trans.parent.name}.trans.txt"
            lines = [line.split(" ", 1) for line in trans.read_text().splitlines()]
            assert sorted(utt for utt, _ in lines) == sorted(p.stem for p in trans.parent.glob("*.flac"))
            for utt, text in lines:
                row = manifest[str((trans.parent / f"{utt}.flac").relative_to(corpus))]
                assert row["text"] == text == normalize(text) and text in sentences
                assert row["speaker"] == trans.parent.parent.name and row["voice"].startswith("espeak-ng:")


def test_audio_is_16k_mono_flac_of_the_requested_hours(corpus):
    total = 0.0
    for split in SPLITS:
        for row in rows(corpus, split):
            info = sf.info(str(corpus / row["audio_filepath"]))
            assert (info.format, info.samplerate, info.channels) == ("FLAC", 16000, 1)
            assert abs(info.duration - row["duration"]) < 1e-3
            total += row["duration"]
    assert total >= 0.95 * HOURS * 3600


def test_splits_share_no_speaker_and_no_sentence(corpus):
    speakers = {split: {r["speaker"] for r in rows(corpus, split)} for split in SPLITS}
    texts = {split: [r["text"] for r in rows(corpus, split)] for split in SPLITS}
    all_texts = [t for split in SPLITS for t in texts[split]]
    assert len(all_texts) == len(set(all_texts))  # each sentence once, so no split shares one
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert speakers[a] and speakers[b] and not speakers[a] & speakers[b]


def test_prepare_librispeech_reads_the_layout(corpus, tmp_path):
    manifests = prepare_librispeech(corpus, tmp_path)
    assert sorted(manifests) == sorted(SPLITS)
    for split in SPLITS:
        prepared = sorted(json.loads(line)["text"] for line in manifests[split].read_text().splitlines())
        assert prepared == sorted(r["text"] for r in rows(corpus, split))


def test_same_seed_same_corpus_different_seed_different(corpus, text_file, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["synth", str(text_file), "--out", str(again), "--hours", str(HOURS), "--seed", "3", "--jobs", "1",
                 "--voices", "espeak-ng", "--augment-share", "0.5", "--dev-share", "0.2", "--test-share", "0.2"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{split}\t{again / f'{split}.jsonl'}" for split in SPLITS]
    for split in SPLITS:
        assert (again / f"{split}.jsonl").read_text() == (corpus / f"{split}.jsonl").read_text()
    assert audio_digests(again) == audio_digests(corpus)

    other = tmp_path / "other"
    make_corpus(text_file, other, seed=4)
    texts = lambda out: [r["text"] for split in SPLITS for r in rows(out, split)]  # noqa: E731
    assert texts(other) != texts(corpus)


def test_held_out_sentences_are_never_read(corpus, text_file, tmp_path):
    """--exclude: a real-speech dev set shares sentences with the text; none of them may be synthesized."""
    held_out = {r["text"] for r in rows(corpus, "test")}
    other = synthesize_corpus([text_file], tmp_path / "other", HOURS, seed=3, jobs=2,
                              exclude=[corpus / "test.jsonl"], **OPTIONS)
    read = {r["text"] for split in SPLITS for r in rows(other[split].parent, split)}
    assert held_out and read and not read & held_out


def test_existing_corpus_is_not_overwritten(corpus, text_file):
    with pytest.raises(ValueError, match="already holds a corpus"):
        synthesize_corpus([text_file], corpus, HOURS, **OPTIONS)


@pytest.mark.parametrize("voice", ["flite:slt", "slt", "flite:rms", "pico:en-US", "mbrola:us2", "espeak-ng:mb-us2",
                                   "festival:cmu_us_slt_arctic_hts", "festival:ked_diphone"])
def test_reserved_voices_are_refused(voice, text_file, tmp_path):
    with pytest.raises(ValueError, match="reserved for independent evaluation"):
        synthesize_corpus([text_file], tmp_path / "out", HOURS, voices=["espeak-ng", voice])
    assert not (tmp_path / "out").exists()


def test_inventory_holds_no_reserved_voice():
    ids = {v.id.lower() for v in available_voices()}
    assert not ids & {r.lower() for r in RESERVED_VOICES}
    assert not [i for i in ids for name in ("slt", "rms", "us2", "ked", "kdlpc", "pico:en-us") if name in i]


def test_band_pass_after_the_lowest_pitch_shift(tmp_path):
    """flite and festival speakers get their pitch from sox; the augmentation's effects after it stay at 16 kHz."""
    if not shutil.which("sox"):
        pytest.skip("sox is not installed: run scripts/install.sh")
    tone = tmp_path / "tone.wav"
    sf.write(tone, 0.5 * np.sin(2 * np.pi * 220 * np.arange(SAMPLE_RATE) / SAMPLE_RATE), SAMPLE_RATE)
    effects = pitch_effect(SPEAKER_PITCH[0]) + ["tempo", "-s", "1.1", "sinc", f"300-{BAND_HIGH_HZ[1]}"]
    out = sf.info(apply_effects(tone, effects, tmp_path / "out.wav"))
    assert out.samplerate == SAMPLE_RATE and out.channels == 1
    assert out.duration == pytest.approx(1 / 1.1, abs=0.02)


def test_skipped_txt_keeps_one_line_per_failure_when_an_engine_error_spans_lines(tmp_path):
    speaker = Speaker(7, Voice("flite", "kal"), pitch=1.5, rate=0.9)
    job = Job("train", speaker, "7-1-0000", str(tmp_path / "7-1-0000.flac"), "HIS MISERABLE TREATMENT", 1.5, 0.9,
              (), None, 0, 0, 2.0)
    report_failures(tmp_path, [(job, "sox exited 2: sox WARN one\n\tsox FAIL two")])
    assert (tmp_path / "skipped.txt").read_text().splitlines() == [
        "flite:kal\tHIS MISERABLE TREATMENT\tsox exited 2: sox WARN one sox FAIL two"]
