"""Word n-gram language models for beam search: `asr lm build` estimates one from text with kaldingram
(Kneser-Ney, pure Python) or KenLM's lmplz (modified Kneser-Ney, for large corpora), and writes beside it
the lexicon (every word of the text, spelled in characters) and, after `asr tune-lm`, the tuned weights:

    lm.arpa or lm.bin      the n-gram model, ARPA text or KenLM binary (fast to load)
    lm.lexicon.txt         WORD W O R D |, one word a line: the words beam search may spell
    lm.tuned.json          {"lm_weight": ..., "word_score": ...} found best on a dev set

Named MODEL.lm.bin (or .lm.arpa) beside a model file MODEL.safetensors, an LM is that model's own: it decodes
with beam search and that LM unless told otherwise (asr.core.decoding.resolve_decoder), with the weights of
MODEL.lm.tuned.json. A shipped model that shares the default model's LM may have weights of its own there.
"""

import functools
import itertools
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from asr.core.paths import ASSETS, DEFAULT_MODEL, SHIPPED
from asr.core.text import WORD_SEPARATOR, normalize
from asr.core.errors import AsrError

log = logging.getLogger(__name__)

ESTIMATORS = ("auto", "kenlm", "kaldingram")
KENLM_MEMORY = "30%"  # lmplz's sorting memory, of the machine's RAM
# KenLM binary: a trie with probabilities and back-offs quantised to 8 bits, ~60% of the unquantised size
# (the 3-gram of the synthetic recipe: 9.0 MB instead of 15.6 MB), as Mozilla DeepSpeech ships its scorer, and
# its pointers compressed (-a, lossless: recipes/natural's 3-gram 8.1 MB instead of 8.9, the same transcripts)
BINARY_FORMAT = ["-q", "8", "-b", "8", "-a", "22", "trie"]
FALLBACK_DISCOUNT = 0.5  # for an order whose counts-of-counts give none below 1 (lmplz's --discount_fallback)
MODEL_LM_SUFFIXES = (".lm.bin", ".lm.arpa")  # an LM beside a model file MODEL.safetensors: MODEL.lm.bin
INSTALL_KENLM = "build KenLM's lmplz and build_binary with `bash scripts/build_kenlm.sh`"


class LMError(AsrError, ValueError):
    """An n-gram LM, lexicon or tuned-weights file that cannot be built or used."""


def model_lm(model) -> Path | None:
    """The LM beside a model's file (MODEL.lm.bin or MODEL.lm.arpa, as default.lm.bin beside the shipped
    default.safetensors), which it decodes with unless told otherwise; None if it has none. The shipped models
    share the default model's (one copy in the package)."""
    model = Path(model)
    if model.resolve().parent == ASSETS and model.stem in SHIPPED:
        model = DEFAULT_MODEL
    return next((lm for suffix in MODEL_LM_SUFFIXES if (lm := model.with_suffix(suffix)).is_file()), None)


def model_tuned(model, lm) -> dict:
    """The weights `asr tune-lm` found for a model with its own LM `lm` (model_lm's): MODEL.lm.tuned.json beside
    the model, else the LM's (the shipped models share one LM, each with weights of its own); {} if never tuned."""
    return read_weights(own_tuned_path(model)) or read_tuned(lm)


def own_tuned_path(model) -> Path:
    """MODEL.lm.tuned.json: the weights tuned for `model` with its own LM, whichever file that LM is."""
    return tuned_path(Path(model).with_suffix(".lm.bin"))


def lexicon_path(lm) -> Path:
    return Path(lm).with_suffix(".lexicon.txt")


def tuned_path(lm) -> Path:
    return Path(lm).with_suffix(".tuned.json")


def kenlm_tool(name: str) -> str | None:
    """The path of a KenLM program on the PATH or beside this Python (where scripts/build_kenlm.sh puts it)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def read_sentences(paths: Iterable) -> Iterable[str]:
    """Normalised, non-empty lines of text files, one sentence a line."""
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if sentence := normalize(line):
                        yield sentence
        except OSError as err:
            raise LMError(f"{path}: cannot read the text ({err.strerror})") from None


def build_lm(texts: list, out, order: int = 3, estimator: str = "auto") -> Path:
    """Estimate an `order`-gram LM on the text files `texts` and write it to `out` (ARPA, or KenLM binary
    if `out` ends in .bin), with its lexicon beside it (lexicon_path). Returns `out`."""
    if estimator not in ESTIMATORS:
        raise LMError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    if order < 2:  # flashlight's KenLM wrapper cannot load unigram models
        raise LMError(f"the n-gram order must be at least 2, not {order}")
    if estimator == "auto":
        estimator = "kenlm" if kenlm_tool("lmplz") else "kaldingram"
    out = Path(out)
    binary = out.suffix == ".bin"
    if binary and not kenlm_tool("build_binary"):
        raise LMError(f"{out}: a binary LM needs KenLM's build_binary, which is not on the PATH; {INSTALL_KENLM}, "
                      "or write an ARPA file (--out lm.arpa)")
    counts: Counter = Counter()

    def sentences():
        for sentence in read_sentences(texts):
            counts.update(sentence.split())
            yield sentence

    stream = sentences()
    first = next(stream, None)
    if first is None:
        raise LMError(f"no words in {', '.join(map(str, texts))}: nothing to build an LM from")
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("estimating a %d-gram LM with %s", order, estimator)
    with tempfile.TemporaryDirectory(prefix="asr-lm-") as tmp:  # a failed build leaves an existing LM intact
        arpa = Path(tmp) / "lm.arpa"
        estimate = kenlm_lmplz if estimator == "kenlm" else kaldingram_lm
        estimate(itertools.chain([first], stream), order, arpa, Path(tmp))
        if binary:
            run_tool([kenlm_tool("build_binary"), *BINARY_FORMAT, str(arpa), str(out)])
        else:
            shutil.move(arpa, out)
    tuned_path(out).unlink(missing_ok=True)  # weights tuned for the LM this one replaces
    lexicon_path(out).write_text("".join(f"{w} {' '.join(w)} {WORD_SEPARATOR}\n" for w in sorted(counts)))
    log.info("%s: %d words, %d distinct; lexicon %s", out, sum(counts.values()), len(counts), lexicon_path(out))
    return out


def kaldingram_lm(sentences: Iterable[str], order: int, arpa: Path, tmp: Path) -> None:
    """Back-off Kneser-Ney as SRILM's `ngram-count -ukndiscount` (kaldingram), in this process."""
    from kaldingram import train

    if not isinstance(train.tqdm, functools.partial):  # its progress bars: tqdm's disable=None, a terminal only
        train.tqdm = functools.partial(train.tqdm, disable=None)
    ngrams = train.NgramCounts(order)
    for sentence in sentences:
        ngrams.add_raw_counts_from_line(sentence)
    ngrams.cal_discounting_constants()
    # D = n1 / (n1 + 2 n2) is 1 when no n-gram of an order occurs twice (small text): every n-gram seen
    # once would get probability 0, written as log10 -99, which forbids the very word sequences of the text
    ngrams.d = [d if d < 1 else FALLBACK_DISCOUNT for d in ngrams.d]
    ngrams.cal_f()
    ngrams.cal_bow()
    with open(arpa, "w", encoding="utf-8") as f:
        ngrams.print_as_arpa(fout=f)


def kenlm_lmplz(sentences: Iterable[str], order: int, arpa: Path, tmp: Path) -> None:
    """Modified Kneser-Ney with KenLM's lmplz, the text streamed to its standard input."""
    if not kenlm_tool("lmplz"):
        raise LMError(f"KenLM's lmplz is not on the PATH; {INSTALL_KENLM}, or use --estimator kaldingram")
    command = [kenlm_tool("lmplz"), "-o", str(order), "-S", KENLM_MEMORY, "-T", str(tmp), "--discount_fallback",
               "--arpa", str(arpa)]
    log_file = tmp / "lmplz.log"  # a file, not a pipe, so that lmplz never blocks on a full one
    with open(log_file, "w") as errors, subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors,
                                                         text=True) as lmplz:
        try:
            for sentence in sentences:
                lmplz.stdin.write(sentence + "\n")
            lmplz.stdin.close()
        except BrokenPipeError:
            pass  # lmplz failed: its log says why
    if lmplz.returncode:
        lines = log_file.read_text().strip().splitlines()
        raise LMError(f"lmplz failed on the text: {lines[-1] if lines else f'exit status {lmplz.returncode}'}")


def run_tool(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise LMError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")


def read_lexicon(path, lm=None) -> list[str]:
    """The words of a lexicon file: the first field of each line (spellings, if any, are ignored)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        made_for = f" for the LM {lm}" if lm else ""
        why = getattr(err, "strerror", None) or "not UTF-8 text"
        raise LMError(f"{path}: cannot read the lexicon{made_for} ({why}); `asr lm build` writes one "
                      "next to the LM, or pass another with --lexicon") from None
    return [line.split()[0] for line in lines if line.strip()]


def read_tuned(lm) -> dict:
    """The weights `asr tune-lm` found for `lm`, or {} if it was never tuned."""
    return read_weights(tuned_path(lm))


def read_weights(path: Path) -> dict:
    """The lm_weight and word_score of a tuned-weights file, or {} if there is none."""
    if not path.is_file():
        return {}
    try:
        tuned = json.loads(path.read_text())
        return {key: float(tuned[key]) for key in ("lm_weight", "word_score")}
    except (ValueError, KeyError, TypeError) as err:
        raise LMError(f"{path}: damaged tuned-weights file ({err}); delete it, then rerun `asr tune-lm`") from None


def write_tuned(lm, values: dict) -> Path:
    path = tuned_path(lm)
    path.write_text(json.dumps(values, indent=2) + "\n")
    return path
