"""Checks that a corpus trained on shares no sentence and no speaker with the dev and test splits scored on.

The default model trains on four corpora (leg 1's 11.5 h, legs 2-4's 32 h, leg 5's fresh 48 h, leg 6's fresh
30 h) and every score is taken on the 32 h corpus's dev and test splits. A sentence counts as read by a training
corpus if its train.jsonl has it or an engine failed on it (skipped.txt); a speaker is a voice with its pitch
and rate, as SPEAKERS.txt lists them, so the check holds whatever voices each corpus was made with.

    python recipes/synthetic/check_disjoint.py data/synthetic-11h data/synthetic
"""

import argparse
from pathlib import Path

from asr.core.manifest import ManifestError, read_manifest

Speaker = tuple[str, str, str]  # voice, pitch, rate


def lines(path: Path) -> list[str]:
    """The lines of a file; none for one that is not there (skipped.txt, when no sentence was skipped)."""
    return path.read_text().splitlines() if path.exists() else []


def fields(path: Path, separator: str, count: int) -> list[list[str]]:
    """The lines of `path` that are not comments, each split into `count` stripped fields (the last takes the
    rest of the line); SystemExit naming the line of one that has fewer."""
    rows = []
    for number, line in enumerate(lines(path), 1):
        if line.startswith(";"):
            continue
        row = [field.strip() for field in line.split(separator, count - 1)]
        if len(row) != count:
            raise SystemExit(f"{path}:{number}: expected {count} fields separated by {separator!r}, got {line!r}")
        rows.append(row)
    return rows


def speakers(corpus: Path) -> dict[str, set[Speaker]]:
    """Each split's speakers, as SPEAKERS.txt (id | split | voice | pitch | rate) lists them."""
    listing = corpus / "SPEAKERS.txt"
    if not listing.exists():
        raise SystemExit(f"{listing}: no such file; is {corpus} a corpus made by asr synth?")
    by_split: dict[str, set[Speaker]] = {}
    for _, split, voice, pitch, rate in fields(listing, "|", 5):
        by_split.setdefault(split, set()).add((voice, pitch, rate))
    return by_split


def sentences_read(corpus: Path) -> set[str]:
    """The sentences of the training split, and those an engine failed on (voice, text, error per line)."""
    read = {u.text for u in read_manifest(corpus / "train.jsonl")}
    return read | {text for _, text, _ in fields(corpus / "skipped.txt", "\t", 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trained", type=Path, help="the corpus trained on (its training split is checked)")
    parser.add_argument("scored", type=Path, help="the corpus scored on (its dev and test splits are checked)")
    args = parser.parse_args()
    try:
        check(args.trained, args.scored)
    except ManifestError as err:
        raise SystemExit(str(err)) from None


def check(trained: Path, scored: Path) -> None:
    """Print what `scored`'s dev and test share with `trained`'s training data; SystemExit if anything."""
    read, trained_speakers, scored_speakers = sentences_read(trained), speakers(trained)["train"], speakers(scored)
    for split in ("dev", "test"):
        texts = {u.text for u in read_manifest(scored / f"{split}.jsonl")}
        shared_texts, shared_speakers = texts & read, scored_speakers.get(split, set()) & trained_speakers
        print(f"{split}: {len(texts)} sentences, {len(shared_texts)} read by {trained}; "
              f"speakers in its training split: {sorted(shared_speakers) or 'none'}")
        if not texts or shared_texts or shared_speakers:
            raise SystemExit(f"{scored}/{split}.jsonl shares sentences or speakers with {trained}'s "
                             f"training data, or is empty")


if __name__ == "__main__":
    main()
