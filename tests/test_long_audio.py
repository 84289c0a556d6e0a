"""A 10-minute recording, made by concatenating synthetic sentences with pauses, transcribed through
`asr transcribe`: decoded in chunks, its words land in the right sentences at the right times."""

import json

import numpy as np
import pytest
from conftest import run_asr_peak_mb, speak

from asr.core.audio import SAMPLE_RATE, load_audio, write_audio
from asr.core.metrics import ErrorCounts, error_counts

SENTENCES = ["OPEN THE DOOR AND TURN ON THE LIGHT", "IT IS COLD OUTSIDE TODAY", "THE CHILDREN PLAYED IN THE PARK",
             "MY BROTHER LIKES GREEN APPLES", "TURN LEFT AT THE NEXT CORNER"]  # ones greedy decoding gets nearly right
MINUTES = 10
TOLERANCE = 0.1  # seconds a word may reach past its sentence (the CTC alignment's step is 30 ms)


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """long.flac: sentences in random order with 0.4-1.2 s pauses for MINUTES minutes, and where each one is:
    a list of (sentence, start, end) in seconds."""
    folder = tmp_path_factory.mktemp("long")
    pieces = []
    for i, text in enumerate(SENTENCES):
        speak(text, folder / f"{i}.flac")
        pieces.append(load_audio(folder / f"{i}.flac"))
    rng = np.random.default_rng(0)
    waves, layout, samples = [], [], 0
    while samples < MINUTES * 60 * SAMPLE_RATE:
        i = int(rng.integers(len(SENTENCES)))
        pause = np.zeros(int(rng.uniform(0.4, 1.2) * SAMPLE_RATE), dtype=np.float32)
        layout.append((SENTENCES[i], samples / SAMPLE_RATE, (samples + len(pieces[i])) / SAMPLE_RATE))
        waves += [pieces[i], pause]
        samples += len(pieces[i]) + len(pause)
    write_audio(folder / "long.flac", np.concatenate(waves))
    return folder / "long.flac", layout, samples / SAMPLE_RATE


def sentence_of(word: dict, layout) -> int:
    """The index of the sentence whose span overlaps the word's the most."""
    return max(range(len(layout)), key=lambda i: min(word["end"], layout[i][2]) - max(word["start"], layout[i][1]))


def test_a_long_file_is_transcribed_sentence_by_sentence_with_the_times_of_the_whole_file(long_recording):
    path, layout, seconds = long_recording
    done, peak_mb = run_asr_peak_mb("transcribe", path, "--format", "json", "--decoder", "greedy", "--quiet")
    result = json.loads(done.stdout)
    assert result["duration"] == pytest.approx(seconds, abs=0.01)
    words = result["words"]
    assert result["text"] == " ".join(w["word"] for w in words)
    assert all(a["end"] <= b["start"] for a, b in zip(words, words[1:])), "words out of order or overlapping"
    heard = [[] for _ in layout]
    for w in words:
        heard[sentence_of(w, layout)].append(w)
    outside = [w for i, said in enumerate(heard) for w in said
               if not layout[i][1] - TOLERANCE <= w["start"] < w["end"] <= layout[i][2] + TOLERANCE]
    assert len(outside) <= 0.02 * len(words), f"{len(outside)} of {len(words)} words reach outside their sentence"
    counts = [error_counts(sentence, " ".join(w["word"] for w in said))
              for (sentence, _, _), said in zip(layout, heard)]
    for (sentence, start, _), said, c in zip(layout, heard, counts):  # none lost or doubled at a chunk boundary
        assert c.cer <= 0.35, f"{sentence!r} at {start:.1f} s heard as {[w['word'] for w in said]}"
    total = sum(counts, start=ErrorCounts())
    assert total.cer <= 0.12, f"CER {total.cer:.3f} over {len(layout)} sentences"
    assert peak_mb < 1024, f"peak RSS {peak_mb:.0f} MB for {seconds:.0f} s of audio"
