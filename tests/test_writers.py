"""Output formats of `asr transcribe`: subtitles parse back to the words and times they were made from."""

import json
import re
import subprocess

import pytest
from conftest import run_asr

from asr.core.decoding import Word
from asr.inference.transcribe import Transcript
from asr.inference.writers import MAX_CUE_WORDS, cues, render, timestamp

CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)\n(.+)")


def seconds(h, m, s, ms) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_subtitles(text: str) -> list[tuple[float, float, str]]:
    return [(seconds(*m.groups()[:4]), seconds(*m.groups()[4:8]), m.group(9)) for m in CUE.finditer(text)]


def speech(n_words: int, pause_after: int | None = None) -> Transcript:
    """n words of 0.3 s with 0.1 s gaps, and a 1 s pause after word `pause_after`."""
    words, t = [], 3600.0 - 2  # cross the hour to exercise every field of the timestamps
    for i in range(n_words):
        words.append(Word(f"W{i}", round(t, 3), round(t + 0.3, 3), 0.9))
        t += 0.4 + (1.0 if i == pause_after else 0)
    return Transcript("a.wav", " ".join(w.word for w in words), t, words)


def test_timestamps_in_both_subtitle_styles():
    assert timestamp(3723.5, ",") == "01:02:03,500" and timestamp(0.0071, ".") == "00:00:00.007"


def test_cues_break_at_pauses_and_at_the_word_limit():
    assert [c.text.split()[0] for c in cues(speech(6, pause_after=2).words)] == ["W0", "W3"]
    assert [len(c.text.split()) for c in cues(speech(MAX_CUE_WORDS + 3).words)] == [MAX_CUE_WORDS, 3]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_parse_back_to_the_words_and_their_times(fmt):
    transcript = speech(20, pause_after=7)
    text = render(transcript, fmt)
    assert text.startswith("WEBVTT\n\n" if fmt == "vtt" else "1\n")
    parsed = parse_subtitles(text)
    assert " ".join(cue[2] for cue in parsed) == transcript.text
    starts = [w.start for w in transcript.words]
    for start, end, words in parsed:
        first = starts.index(start)  # every cue starts exactly at one of its words
        assert transcript.words[first + len(words.split()) - 1].end == pytest.approx(end)
    assert all(a[1] <= b[0] for a, b in zip(parsed, parsed[1:]))


def test_tsv_has_a_header_and_millisecond_cues():
    lines = render(speech(3), "tsv").splitlines()
    assert lines[0] == "start\tend\ttext" and lines[1] == "3598000\t3599100\tW0 W1 W2"


def test_transcribe_writes_one_file_per_input_and_subtitles_of_real_speech(tmp_path):
    sentences = {"one": "the cat sat on the mat", "two": "open the door please"}
    for name, sentence in sentences.items():
        subprocess.run(["espeak-ng", "-w", str(tmp_path / f"{name}.wav"), sentence], check=True)
    refused = run_asr("transcribe", tmp_path, "--format", "srt", check=False)
    assert refused.returncode == 2 and "--output-dir" in refused.stderr
    run_asr("transcribe", tmp_path, "--format", "vtt", "--output-dir", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.vtt", "two.vtt"]
    for name in sentences:
        wav_seconds = json.loads(run_asr("transcribe", tmp_path / f"{name}.wav", "--format", "json").stdout)["duration"]
        parsed = parse_subtitles((tmp_path / "out" / f"{name}.vtt").read_text())
        assert parsed and all(0 <= start < end <= wav_seconds for start, end, _ in parsed)
        assert len(" ".join(cue[2] for cue in parsed).split()) >= 3
