"""Checks that leg 1's corpus shares no sentence and no speaker with leg 2's dev and test splits.

Both corpora come from one seed with the same voices, so `asr synth` deals the speakers and orders the sentences
the same way; leg 1's corpus reads the first sentences of that order (one per utterance planned, rendered or
failed) and leg 2's dev and test splits read later ones. This recomputes leg 1's speaker split and the sentence
order without rendering anything, and checks leg 2's dev and test manifests against them.

    python recipes/synthetic/check_legs.py data/synthetic-11h data/synthetic [--seed S] [--voices V...]
"""

import argparse
import json
import random
from pathlib import Path

from asr.synth import make_speakers, read_sentences, select_voices, split_speakers


def lines(path: Path) -> list[str]:
    """The lines of a manifest or of skipped.txt; none for a file that is not there (no sentence was skipped)."""
    return path.read_text().splitlines() if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("leg1", type=Path, help="leg 1's corpus")
    parser.add_argument("leg2", type=Path, help="leg 2's corpus (its dev.jsonl and test.jsonl are checked)")
    parser.add_argument("--leg1-shares", type=float, nargs=2, default=(0.05, 0.05), metavar=("DEV", "TEST"),
                        help="the --dev-share and --test-share leg 1's corpus was made with")
    parser.add_argument("--seed", type=int, default=0, help="the --seed both corpora were made with")
    parser.add_argument("--voices", nargs="+", help="the --voices both corpora were made with (default: all)")
    parser.add_argument("--text-dir", type=Path, default=Path("../shared/data/text"),
                        help="the folder of text files both corpora read (make_corpus.sh's TEXT_DIR)")
    args = parser.parse_args()
    planned = sum(len(lines(args.leg1 / name)) for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "skipped.txt"))
    rng = random.Random(args.seed)
    speakers = make_speakers(select_voices(args.voices))
    leg1 = split_speakers(speakers, dict(zip(("dev", "test"), args.leg1_shares)), rng)
    order = {text: i for i, (_, text) in enumerate(read_sentences(sorted(args.text_dir.glob("*.txt")), rng))}
    leg1_train = {s.id for s in leg1["train"]}
    for split in ("dev", "test"):
        rows = [json.loads(line) for line in lines(args.leg2 / f"{split}.jsonl")]
        first = min(order[r["text"]] for r in rows)
        shared = sorted({int(r["speaker"]) for r in rows} & leg1_train)
        print(f"{split}: {len(rows)} utterances; earliest sentence #{first} (leg 1 read #0-#{planned - 1}); "
              f"speakers in leg 1's training split: {shared or 'none'}")
        if first < planned or shared:
            raise SystemExit(f"{split}: shares sentences or speakers with leg 1's training data")


if __name__ == "__main__":
    main()
