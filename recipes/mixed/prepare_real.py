"""speechocean762 -> the mixed recipe's real-speech manifests.

    python3 recipes/mixed/prepare_real.py SPEECHOCEAN_DIR OUT_DIR [--hours 1 2.5]

SPEECHOCEAN_DIR holds speechocean762's manifest.jsonl (each line with a `speaker` and a `split` of train or
dev, both splits present: it stops naming the first line that is not so) and its audio; OUT_DIR gets
train.jsonl, dev.jsonl and, for each of --hours, train-<H>h.jsonl: whole speakers of train, drawn in a seeded
order until H hours, each subset inside the next (the learning curve's real-speech amounts). Audio paths are
written absolute, so the manifests work from anywhere.
"""

import argparse
import random
import sys
from pathlib import Path

from asr.core.manifest import ManifestError, manifest_rows, read_manifest, write_manifest

SPLITS = ("train", "dev")


def speaker_subset(utterances, hours: float, seed: int = 0):
    """The utterances of whole speakers, in a seeded speaker order, until `hours` are reached."""
    speakers = sorted({u.extra["speaker"] for u in utterances})
    random.Random(seed).shuffle(speakers)
    chosen, total = set(), 0.0
    for speaker in speakers:
        if total >= hours * 3600:
            break
        chosen.add(speaker)
        total += sum(u.duration for u in utterances if u.extra["speaker"] == speaker)
    return [u for u in utterances if u.extra["speaker"] in chosen]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--hours", type=float, nargs="*", default=[1.0, 2.5])
    args = parser.parse_args(argv)
    manifest = args.source / "manifest.jsonl"
    if not manifest.is_file():
        sys.exit(f"prepare_real.py: no {manifest}: point SPEECHOCEAN (run.sh) or SPEECHOCEAN_DIR at a folder holding "
                 "speechocean762's audio (OpenSLR SLR101, CC BY 4.0) and a manifest.jsonl whose lines give each "
                 "recording's speaker and split (train or dev); recipes/mixed/README.md says how to make it")
    expected = "each line of the manifest needs a speaker and a split of train or dev"
    utterances = []
    try:
        for where, row in manifest_rows(manifest):
            if isinstance(row, ManifestError):
                raise row
            if "speaker" not in row.extra:
                sys.exit(f"prepare_real.py: {where}: no speaker; {expected}")
            if row.extra.get("split") not in SPLITS:
                problem = f"split {row.extra['split']!r}" if "split" in row.extra else "no split"
                sys.exit(f"prepare_real.py: {where}: {problem}; {expected}")
            utterances.append(row)
    except ManifestError as err:
        sys.exit(f"prepare_real.py: {err}")
    splits = {split: [u for u in utterances if u.extra["split"] == split] for split in SPLITS}
    for split, rows in splits.items():
        if not rows:
            sys.exit(f"prepare_real.py: {manifest}: no line has the split {split}; {expected}, and both "
                     "splits need lines")
    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_manifest(args.out / f"{split}.jsonl", rows)
    for hours in args.hours:
        subset = speaker_subset(splits["train"], hours)
        write_manifest(args.out / f"train-{hours:g}h.jsonl", subset)
    for path in sorted(args.out.glob("*.jsonl")):
        rows = read_manifest(path)
        print(f"{path}: {len(rows)} utterances, {sum(u.duration for u in rows) / 3600:.2f} h, "
              f"{len({u.extra['speaker'] for u in rows})} speakers")


if __name__ == "__main__":
    main()
