"""The synthetic recipe's helpers: word accuracy split by whether training heard the word, and the check
that leg 1's corpus shares no sentence or speaker with leg 2's dev and test splits."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asr.synth import synthesize_corpus

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "synthetic"
SEEN_WORDS = RECIPE / "seen_words.py"
WORDS = ["red", "green", "blue", "old", "small", "tall"], ["cats", "dogs", "boats", "trees", "houses", "clocks"]


def test_seen_words_counts_right_words_by_whether_training_heard_them(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"audio_filepath": "a.flac", "duration": 1.0, "text": "the cat sat"}) + "\n")
    hyps = tmp_path / "hyps.jsonl"
    rows = [{"reference": "THE CAT SAT ON A MAT", "hypothesis": "THE CAT SET ON A MAT EXTRA"},  # SAT wrong
            {"reference": "THE DOG", "hypothesis": ""}]  # both deleted
    hyps.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = subprocess.run([sys.executable, str(SEEN_WORDS), str(hyps), str(train)], capture_output=True,
                            text=True, timeout=120, check=True)
    heard, never = result.stdout.splitlines()
    # heard: THE CAT SAT THE -> THE and CAT right in row 1 (2 of 4); never heard: ON A MAT DOG -> ON A MAT (3 of 4)
    assert heard.split() == ["heard", "in", "training:", "4", "words", "(", "50.0%),", "50.0%", "right"]
    assert never.split() == ["never", "heard:", "4", "words", "(", "50.0%),", "75.0%", "right"]


@pytest.fixture(scope="module")
def legs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A small leg-1 corpus and a larger leg-2 corpus from one seed, as run.sh makes them (espeak-ng only)."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install_tts.sh")
    root = tmp_path_factory.mktemp("legs")
    (root / "text").mkdir()
    sentences = [f"the {a} {b} near the {c} {d}" for a in WORDS[0] for b in WORDS[1] for c in WORDS[0]
                 for d in WORDS[1]]
    (root / "text" / "sentences.txt").write_text("\n".join(sentences) + "\n")
    options = dict(voices=["espeak-ng"], seed=5, jobs=2, augment_share=0.0)
    synthesize_corpus([root / "text" / "sentences.txt"], root / "leg1", 0.01, dev_share=0.2, test_share=0.2,
                      **options)
    synthesize_corpus([root / "text" / "sentences.txt"], root / "leg2", 0.05, dev_share=0.1, test_share=0.1,
                      **options)
    return root / "text", root / "leg1", root / "leg2"


def check_legs(text_dir: Path, leg1: Path, leg2: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPE / "check_legs.py"), str(leg1), str(leg2), "--leg1-shares",
                           "0.2", "0.2", "--seed", "5", "--voices", "espeak-ng", "--text-dir", str(text_dir)],
                          capture_output=True, text=True, timeout=120)


def test_check_legs_passes_corpora_made_as_the_recipe_makes_them(legs):
    result = check_legs(*legs)
    assert result.returncode == 0, result.stderr
    dev, test = result.stdout.splitlines()
    assert dev.startswith("dev: ") and test.startswith("test: ")
    assert dev.endswith("speakers in leg 1's training split: none"), dev


def test_check_legs_fails_when_leg1_read_the_dev_sentences(legs):
    text_dir, _, leg2 = legs  # leg 2 as its own leg 1: its dev and test sentences are among those it read
    result = check_legs(text_dir, leg2, leg2)
    assert result.returncode != 0
    assert "shares sentences or speakers with leg 1's training data" in result.stderr
