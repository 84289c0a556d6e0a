"""The Kokoro neural TTS engine (`asr synth --voices kokoro`): speakers, the model's checksum, a resumable corpus
that a seed makes the same, and speech a recogniser understands. Synthesis needs the `kokoro` extra."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from asr.core.config import ConfigError
from asr.core.text import normalize
from asr.corpora import kokoro
from asr.corpora.kokoro import DEV_VOICES, Speaker, is_dev_voice, make_speakers, model_path, training_packs

PACKS = Path(__file__).parent / "data" / "kokoro-packs.npz"  # af_bella, am_michael, bf_emma
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "kokoro"
SENTENCES = ["the cat sat on the mat", "open the door and come in", "she sells sea shells by the shore",
             "we walked home in the rain", "my brother plays the old piano", "the bus was late again today"]


def installed() -> bool:
    try:
        model_path()
    except ConfigError:
        return False
    return True


needs_kokoro = pytest.mark.skipif(not installed(), reason=f"Kokoro is not installed: {kokoro.INSTALL}")


@pytest.fixture(scope="module")
def tts():
    return kokoro.load_kokoro(PACKS)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return path


def test_dev_voices_and_their_older_versions_never_make_a_training_speaker():
    names = ["af_sky", "af_v0sky", "bm_lewis", "bm_v0lewis", "am_puck", "am_echo", "af_river", "bf_lily",
             "af_bella", "af_v0bella", "am_adam", "bf_emma", "jf_alpha", "zm_yunxi"]
    speakers = make_speakers(names, seed=0)
    used = {pack for s in speakers for pack, _ in s.voice}
    assert not {n for n in used if is_dev_voice(n)}
    assert used == {"af_bella", "af_v0bella", "am_adam", "bf_emma", "jf_alpha", "zm_yunxi"}
    assert len({s.id for s in speakers}) > 300  # blends: hundreds of speakers from six packs
    assert all(is_dev_voice(n) for n in ["af_v0sky", "bm_v0lewis", *DEV_VOICES])
    assert not is_dev_voice("af_v0")  # the v0 pack of af is not af_sky


@pytest.mark.skipif(not (SHARED / "voices.npz").exists(), reason="no shared Kokoro packs beside this clone")
def test_the_shared_corpus_trains_on_no_dev_voice():
    names = list(np.load(SHARED / "voices.npz").keys())
    assert {n for s in make_speakers(names, 0) for n, _ in s.voice}.isdisjoint(DEV_VOICES)
    rows = [json.loads(line) for line in (SHARED / "manifest.jsonl").read_text().splitlines()]
    train = {pack for r in rows if r["split"] == "train" for pack, _ in r["voice"]}
    assert train and not {p for p in train if is_dev_voice(p)}


def test_the_voice_reserved_for_evaluation_is_refused():
    with pytest.raises(ConfigError, match="af_heart, reserved"):
        training_packs(["af_bella", "af_heart"])


def test_a_wrong_model_file_is_refused_by_its_checksum(tmp_path):
    fake = tmp_path / "kokoro-v1.0.int8.onnx"
    fake.write_bytes(b"\x08\x07" + bytes(1000))
    with pytest.raises(ConfigError, match="sha256 .* expected 6e742170"):
        model_path(fake)


def test_a_blend_speaks_in_british_when_its_leading_pack_is_british():
    assert Speaker((("bf_emma", 0.6), ("am_adam", 0.4))).lang == "en-gb"
    assert Speaker((("bf_emma", 0.4), ("am_adam", 0.6))).lang == "en-us"
    assert Speaker((("jf_alpha", 1.0),)).lang == "en-us"


@pytest.mark.parametrize("argv, message", [
    (["--voices", "kokoro", "espeak-ng"], "kokoro makes a corpus of its own"),
    (["--voices", "kokoro"], "needs --voice-packs"),
    (["--voices", "kokoro", "--voice-packs", str(PACKS), "--dev-share", "0.1"], "train split only"),
    (["--voices", "kokoro", "--voice-packs", str(PACKS), "--augment-share", "0.5"], "drop --augment-share"),
])
def test_synth_refuses_what_kokoro_cannot_do(tmp_path, capsys, argv, message):
    assert main(["synth", str(tmp_path / "t.txt"), "--out", str(tmp_path / "o"), "--hours", "1", *argv]) == 2
    assert message in capsys.readouterr().err


@needs_kokoro
def test_a_blend_differs_from_both_of_its_voices(tts):
    a, b = Speaker((("af_bella", 1.0),)), Speaker((("am_michael", 1.0),))
    blend = Speaker((("af_bella", 0.5), ("am_michael", 0.5)))
    spectra = {s.id: mean_log_spectrum(kokoro.speak(tts, s, "OPEN THE DOOR AND COME IN", 1.0)) for s in (a, b, blend)}
    between = np.abs(spectra[a.id] - spectra[b.id]).mean()
    for voice in (a, b):
        assert np.abs(spectra[blend.id] - spectra[voice.id]).mean() > 0.1 * between


def mean_log_spectrum(wave: np.ndarray) -> np.ndarray:
    """The long-term log power spectrum (257,) of a 16 kHz waveform: the voice more than the words."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, 512)[::256] * np.hanning(512)
    return np.log(np.mean(np.abs(np.fft.rfft(frames)) ** 2, axis=0) + 1e-10)


@needs_kokoro
def test_pocketsphinx_understands_kokoro(tts):
    pocketsphinx = pytest.importorskip("pocketsphinx", reason='pocketsphinx is in the dev extra: pip install -e ".[dev]"')
    import jiwer

    decoder = pocketsphinx.Decoder(samprate=16000, loglevel="FATAL")
    references, hypotheses = [], []
    for text in ["she sells sea shells by the shore", "we walked home in the rain"]:
        wave = kokoro.speak(tts, Speaker((("af_bella", 1.0),)), normalize(text), 1.0)
        decoder.start_utt()
        decoder.process_raw((np.clip(wave, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
        decoder.end_utt()
        references.append(normalize(text))
        hypotheses.append(normalize(decoder.hyp().hypstr if decoder.hyp() else ""))
    assert jiwer.wer(references, hypotheses) <= 0.35, hypotheses


def synth(text_file: Path, out: Path, hours: float, seed: int = 5) -> list[dict]:
    assert main(["synth", str(text_file), "--voices", "kokoro", "--voice-packs", str(PACKS), "--out", str(out),
                 "--hours", str(hours), "--seed", str(seed), "--jobs", "1"]) in (0, None)
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


@pytest.mark.slow
@needs_kokoro
def test_a_seed_makes_the_same_corpus_and_a_second_run_extends_it(text_file, tmp_path):
    first = synth(text_file, tmp_path / "a", 0.0008)
    assert len(first) >= 1 and all(r["split"] == "train" for r in first)
    again = synth(text_file, tmp_path / "b", 0.0008)
    assert again == first
    for row in first:
        a, b = (sf.read(tmp_path / folder / row["audio_filepath"])[0] for folder in "ab")
        assert np.array_equal(a, b)
        assert abs(len(a) / 16000 - row["duration"]) < 0.01
    longer = synth(text_file, tmp_path / "a", 0.002)
    assert longer[:len(first)] == first and len(longer) > len(first)
    assert len({r["text"] for r in longer}) == len(longer)  # a sentence is read once
    other = synth(text_file, tmp_path / "c", 0.0008, seed=6)
    assert [r["text"] for r in other] != [r["text"] for r in first]


@pytest.mark.slow
@needs_kokoro
def test_a_torn_last_manifest_line_is_dropped_and_remade(text_file, tmp_path):
    rows = synth(text_file, tmp_path / "a", 0.0008)
    manifest = tmp_path / "a" / "train.jsonl"
    manifest.write_text(manifest.read_text()[:-20])  # killed mid-write
    assert synth(text_file, tmp_path / "a", 0.0008) == rows
    manifest.write_text(manifest.read_text()[:-1])  # killed before the last newline
    assert synth(text_file, tmp_path / "a", 0.0008) == rows
