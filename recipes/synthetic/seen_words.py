"""How often the model gets a reference word right, split by whether training ever let it hear that word.

    python recipes/synthetic/seen_words.py HYPOTHESES.jsonl data/synthetic/train.jsonl [more training manifests]

HYPOTHESES.jsonl is `asr evaluate --out`'s file. A word is right where jiwer's alignment matches it; insertions
belong to no reference word and are left out, so 1 - (right / words) is below the WER by the insertion rate.
"""

import argparse
import json
from collections import Counter

import jiwer

from asr.core.manifest import read_manifest
from asr.core.text import normalize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hypotheses", help="asr evaluate --out file")
    parser.add_argument("train", nargs="+", help="the manifests the model was trained on")
    args = parser.parse_args()
    seen = {word for manifest in args.train for u in read_manifest(manifest) for word in normalize(u.text).split()}
    words, right = Counter(), Counter()
    with open(args.hypotheses) as f:
        for row in map(json.loads, f):
            reference = row["reference"].split()
            if not reference:
                continue
            matched = set()
            for chunk in jiwer.process_words(row["reference"], row["hypothesis"] or "<empty>").alignments[0]:
                if chunk.type == "equal":
                    matched.update(range(chunk.ref_start_idx, chunk.ref_end_idx))
            for i, word in enumerate(reference):
                kind = "heard in training" if word in seen else "never heard"
                words[kind] += 1
                right[kind] += i in matched
    total = sum(words.values())
    for kind in ("heard in training", "never heard"):
        print(f"{kind:>17}: {words[kind]:6d} words ({words[kind] / max(total, 1):6.1%}), "
              f"{right[kind] / max(words[kind], 1):6.1%} right")


if __name__ == "__main__":
    main()
