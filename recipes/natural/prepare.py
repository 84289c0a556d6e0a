"""The natural recipe's manifests: Kokoro speech and Cathy for training, Kokoro's unseen voices for dev.

    python3 recipes/natural/prepare.py OUT --kokoro SHARED_KOKORO_DIR --kokoro-made DIR --cathy DIR \\
        --real-dev MANIFEST --held-out MANIFEST... [--hours 1.5 3]

OUT gets:
    kokoro-dev.jsonl        the shared corpus's `split: dev` rows: six voices no training set may use
    real-dev.jsonl          --real-dev: native real read speech, a dev set
    kokoro-train.jsonl      its `train` rows, then the corpus `asr synth --voices kokoro` made in --kokoro-made
    kokoro-train-<H>h.jsonl the first H hours of kokoro-train, each subset inside the next (the learning curve)
    cathy.jsonl             Cathy: one native speaker on a real microphone

Every training row whose sentence is read in a dev set or a --held-out manifest (the other dev and test sets)
is dropped, and a
training row spoken by a dev voice stops the script. Audio paths are written absolute.
"""

import argparse
import sys
from pathlib import Path

from asr.core.manifest import read_manifest, write_manifest
from asr.core.text import normalize
from asr.corpora.kokoro import is_dev_voice


def kokoro_rows(folder: Path, split: str) -> list:
    return [u for u in read_manifest(folder / "manifest.jsonl") if u.extra.get("split") == split]


def first_hours(utterances, hours: float) -> list:
    """The utterances in order until `hours`."""
    total, kept = 0.0, []
    for u in utterances:
        if total >= hours * 3600:
            break
        kept.append(u)
        total += u.duration
    return kept


def describe(path: Path) -> str:
    rows = read_manifest(path)
    speakers = {u.extra.get("speaker") for u in rows}
    return f"{path}: {len(rows)} utterances, {sum(u.duration for u in rows) / 3600:.2f} h, {len(speakers)} speakers"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--kokoro", type=Path, required=True, help="the shared Kokoro corpus (manifest.jsonl)")
    parser.add_argument("--kokoro-made", type=Path, required=True, help="what asr synth --voices kokoro made")
    parser.add_argument("--cathy", type=Path, required=True, help="Cathy's folder (manifest.jsonl)")
    parser.add_argument("--real-dev", type=Path, required=True, help="native real speech for dev")
    parser.add_argument("--held-out", nargs="+", default=[], type=Path, help="dev and test manifests")
    parser.add_argument("--hours", type=float, nargs="*", default=[1.5, 3.0])
    args = parser.parse_args(argv)
    dev = {"kokoro-dev": kokoro_rows(args.kokoro, "dev"), "real-dev": read_manifest(args.real_dev)}
    held_out = {normalize(u.text) for rows in [*dev.values(), *map(read_manifest, args.held_out)] for u in rows}

    def trainable(rows):
        return [u for u in rows if normalize(u.text) not in held_out]

    made = args.kokoro_made / "train.jsonl"
    kokoro = trainable(kokoro_rows(args.kokoro, "train") + (read_manifest(made) if made.exists() else []))
    dev_voiced = [u for u in kokoro if any(is_dev_voice(pack) for pack, _ in u.extra["voice"])]
    if dev_voiced:
        sys.exit(f"prepare.py: {dev_voiced[0].audio_filepath} is spoken by a dev voice "
                 f"({dev_voiced[0].extra['speaker']}); no training row may be")
    args.out.mkdir(parents=True, exist_ok=True)
    outputs = dev | {"kokoro-train": kokoro, "cathy": trainable(read_manifest(args.cathy / "manifest.jsonl"))}
    outputs |= {f"kokoro-train-{h:g}h": first_hours(kokoro, h) for h in args.hours}
    for name, rows in outputs.items():
        write_manifest(args.out / f"{name}.jsonl", rows)
        print(describe(args.out / f"{name}.jsonl"))


if __name__ == "__main__":
    main()
