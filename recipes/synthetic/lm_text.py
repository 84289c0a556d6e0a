"""Text for the synthetic model's language model: every sentence of the text corpora, normalised,
except those read in the dev and test splits (an LM that has seen the test sentences would flatter it).

    python recipes/synthetic/lm_text.py "$TEXT_DIR"/*.txt --exclude data/synthetic/{dev,test}.jsonl \\
        --out exp/lm/text.txt
"""

import argparse
from pathlib import Path

from asr.core.lm import read_sentences
from asr.core.manifest import read_manifest
from asr.core.text import normalize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="+", type=Path)
    parser.add_argument("--exclude", nargs="+", default=[], help="manifests whose sentences to leave out")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    held_out = {normalize(u.text) for manifest in args.exclude for u in read_manifest(manifest)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept = dropped = 0
    with args.out.open("w") as out:
        for sentence in read_sentences(args.texts):
            if sentence in held_out:
                dropped += 1
            else:
                out.write(sentence + "\n")
                kept += 1
    print(f"{args.out}: {kept} sentences, {dropped} held-out sentences left out")


if __name__ == "__main__":
    main()
