"""Split the Free Spoken Digit Dataset manifest into train / dev / test manifests.

test = takes 0-4 of every digit and speaker (the dataset's own convention, `split: test`),
dev  = takes 5-9 (held out from the training takes, for checkpoint selection),
train = takes 10-49.

    python recipes/digits/prepare.py ../shared/data/fsdd/manifest.jsonl data/digits
"""

import argparse
from pathlib import Path

from asr.manifest import read_manifest, write_manifest

DEV_TAKES = range(5, 10)


def take(utterance) -> int:
    """The take index of an FSDD file named DIGIT_SPEAKER_TAKE.wav."""
    return int(utterance.audio_filepath.stem.rsplit("_", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    utterances = read_manifest(args.manifest)
    splits = {"test": [u for u in utterances if u.extra["split"] == "test"],
              "dev": [u for u in utterances if u.extra["split"] == "train" and take(u) in DEV_TAKES],
              "train": [u for u in utterances if u.extra["split"] == "train" and take(u) not in DEV_TAKES]}
    for name, rows in splits.items():
        write_manifest(args.out / f"{name}.jsonl", rows)
        print(f"{args.out / name}.jsonl\t{len(rows)} utterances")


if __name__ == "__main__":
    main()
