"""Split the Free Spoken Digit Dataset into train / dev / test manifests.

test = takes 0-4 of every digit and speaker (the dataset's own convention, `split: test`),
dev  = takes 5-9 (held out from the training takes, for checkpoint selection),
train = takes 10-49.

The dataset is a manifest with a split field, or the dataset's recordings/ folder of DIGIT_SPEAKER_TAKE.wav
files (as a clone of github.com/Jakobovski/free-spoken-digit-dataset has it):

    python recipes/digits/prepare.py ../shared/data/fsdd/manifest.jsonl data/digits
    python recipes/digits/prepare.py free-spoken-digit-dataset/recordings data/digits
"""

import argparse
from pathlib import Path

from asr.core.audio import audio_duration
from asr.core.manifest import Utterance, read_manifest, write_manifest

DEV_TAKES = range(5, 10)
TEST_TAKES = range(5)
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def take(utterance) -> int:
    """The take index of an FSDD file named DIGIT_SPEAKER_TAKE.wav."""
    return int(utterance.audio_filepath.stem.rsplit("_", 1)[1])


def from_recordings(folder: Path) -> list[Utterance]:
    """An Utterance with the manifest's fields for each DIGIT_SPEAKER_TAKE.wav in `folder`."""
    utterances = []
    for path in sorted(folder.glob("*_*_*.wav")):
        digit, speaker, take = path.stem.split("_")
        utterances.append(Utterance(path.absolute(), audio_duration(path), WORDS[int(digit)],
                                    {"speaker": speaker, "split": "test" if int(take) in TEST_TAKES else "train"}))
    if not utterances:
        raise SystemExit(f"prepare.py: no DIGIT_SPEAKER_TAKE.wav files in {folder}")
    return utterances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="the dataset's manifest, or its folder of recordings")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    utterances = from_recordings(args.manifest) if args.manifest.is_dir() else read_manifest(args.manifest)
    splits = {"test": [u for u in utterances if u.extra["split"] == "test"],
              "dev": [u for u in utterances if u.extra["split"] == "train" and take(u) in DEV_TAKES],
              "train": [u for u in utterances if u.extra["split"] == "train" and take(u) not in DEV_TAKES]}
    for name, rows in splits.items():
        write_manifest(args.out / f"{name}.jsonl", rows)
        print(f"{args.out / name}.jsonl\t{len(rows)} utterances")


if __name__ == "__main__":
    main()
