"""The synthetic recipe's scoring helper: word accuracy split by whether training heard the word."""

import json
import subprocess
import sys
from pathlib import Path

SEEN_WORDS = Path(__file__).resolve().parent.parent / "recipes" / "synthetic" / "seen_words.py"


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
