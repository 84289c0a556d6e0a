"""Beam search with an n-gram LM: our decoder (torchaudio's flashlight `ctc_decoder` + KenLM, asr/core/decoding.py)
against pyctcdecode (pure Python over the kenlm module) on the same log-probabilities, with the same LM and
beam size. Prints decoding time and WER side by side, with greedy and beam search without LM for reference.

    python scripts/bench_beam.py                                   # simulated CTC output, LibriTTS text
    python scripts/bench_beam.py --model M --manifest dev.jsonl --lm lm.bin   # a trained model's output

By default it simulates a character CTC model on 200 held-out sentences of ../shared/data/text/
libritts_tc100.txt (peaky posteriors, about 12% of characters confused) and builds a 3-gram LM on the
remaining sentences. pyctcdecode pins numpy<2, so it runs in its own virtualenv, made on first use under
WORK/.venv-pyctcdecode with ufal.kenlm (prebuilt kenlm module); the log-probabilities travel as .npy.

Both decoders score alike: flashlight adds lm_weight x the LM's log10 probability, pyctcdecode alpha x its
natural log, so alpha = lm_weight / ln 10; both add the word score (beta) per word. The defaults are
pyctcdecode's (alpha 0.5, beta 1.0) unless the LM has tuned values (`asr tune-lm`). Pruning matches too:
hypotheses more than 10 below the best are dropped (our beam_threshold, pyctcdecode's beam_prune_logp).
"""

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asr.core.decoding import BeamSearchDecoder, DecoderConfig, greedy_decode, resolve_decoder  # noqa: E402
from asr.core.lm import build_lm, kenlm_tool, lexicon_path, read_lexicon, read_tuned  # noqa: E402
from asr.core.metrics import ErrorCounts, error_counts  # noqa: E402
from asr.core.text import BLANK, WORD_SEPARATOR, CharTokenizer, normalize  # noqa: E402

TEXT = ROOT.parent / "shared" / "data" / "text" / "libritts_tc100.txt"
PYCTCDECODE = ["pyctcdecode==0.5.0", "numpy<2", "ufal.kenlm"]

RUNNER = '''"""Decode saved log-probabilities with pyctcdecode; print texts and timings as JSON."""
import json, sys, time
import numpy as np
from pyctcdecode import build_ctcdecoder

args = json.load(open(sys.argv[1]))
data = np.load(args["log_probs"])
start = time.perf_counter()
decoder = build_ctcdecoder(args["labels"], kenlm_model_path=args["lm"], unigrams=args["unigrams"],
                           alpha=args["alpha"], beta=args["beta"])
loaded = time.perf_counter()
texts = [decoder.decode(data[f"u{i}"], beam_width=args["beam_size"]) for i in range(len(data.files))]
print(json.dumps({"texts": texts, "load_s": loaded - start, "decode_s": time.perf_counter() - loaded}))
'''


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a model bundle; default: simulated log-probabilities")
    p.add_argument("--manifest", help="utterances for --model")
    p.add_argument("--lm", help="ARPA or KenLM binary with its lexicon (asr lm build); default: built here")
    p.add_argument("--utterances", type=int, default=200, help="simulated utterances (default: 200)")
    p.add_argument("--beam-size", type=int, default=50)
    p.add_argument("--beam-threshold", type=float, default=10.0, help="pyctcdecode's beam_prune_logp, negated")
    p.add_argument("--lm-weight", type=float, help="our LM weight, on log10 LM scores (pyctcdecode's alpha x "
                                                   "ln 10); default: the LM's tuned value, else 0.5 x ln 10")
    p.add_argument("--word-score", type=float, help="both decoders' word score (pyctcdecode's beta); "
                                                    "default: the LM's tuned value, else 1.0")
    p.add_argument("--work", default=str(ROOT / "exp" / "bench_beam"), help="folder for the LM, data and venv")
    return p.parse_args()


def simulate(sentences: list[str], tokenizer, seed: int = 0) -> list[torch.Tensor]:
    """CTC log-probs (T, V) a character model might give: each character peaks on one step between blank
    runs; 12% of the peaks go to a wrong letter, with the right one second; logits get Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    letters = [i for i, piece in enumerate(tokenizer.vocab) if piece.isalpha()]
    out = []
    for sentence in sentences:
        steps = [BLANK]
        for token in tokenizer.encode(sentence):
            steps += [token] + [BLANK] * int(torch.randint(1, 4, (1,), generator=g))
        logits = torch.randn(len(steps), len(tokenizer), generator=g)
        for t, token in enumerate(steps):
            peak = 6 + 1.5 * torch.randn(1, generator=g).item()
            if token != BLANK and tokenizer.vocab[token] != WORD_SEPARATOR and torch.rand(1, generator=g) < 0.12:
                wrong = letters[int(torch.randint(len(letters), (1,), generator=g))]
                logits[t, wrong] += peak
                peak -= 1.0
            logits[t, token] += peak
        out.append(logits.log_softmax(dim=-1))
    return out


def simulated_set(args, work: Path):
    """(log-probs, references, tokenizer, LM): held-out sentences of TEXT and an LM on the rest."""
    lines = [normalize(line) for line in TEXT.read_text().splitlines()]
    held_out = [s for s in lines[::50] if 8 <= len(s.split()) <= 25][: args.utterances]
    (work / "lm_text.txt").write_text("".join(s + "\n" for i, s in enumerate(lines) if i % 50))
    lm = Path(args.lm) if args.lm else work / ("lm.bin" if kenlm_tool("build_binary") else "lm.arpa")
    if not lm.exists():
        print(f"building a 3-gram LM on {TEXT.name} (held-out sentences removed) -> {lm}", file=sys.stderr)
        build_lm([work / "lm_text.txt"], lm, order=3)
    tokenizer = CharTokenizer()
    return simulate(held_out, tokenizer), held_out, tokenizer, lm


def model_set(args):
    from asr.core.manifest import read_manifest
    from asr.inference.transcribe import load_model
    from asr.inference.tuning import dev_log_probs

    if not (args.manifest and args.lm):
        sys.exit("bench_beam.py: --model needs --manifest and --lm")
    recognizer = load_model(args.model, "cpu", DecoderConfig("greedy"))
    dev = dev_log_probs(recognizer, read_manifest(args.manifest))
    if any(len(chunks) > 1 for chunks in dev.log_probs):
        sys.exit("bench_beam.py: --manifest must hold utterances of up to 30 s (one chunk each)")
    return [chunks[0] for chunks in dev.log_probs], dev.references, recognizer.tokenizer, Path(args.lm)


def wer(texts: list[str], references: list[str]) -> float:
    return sum((error_counts(r, normalize(t)) for r, t in zip(references, texts)), ErrorCounts()).wer


def run_ours(log_probs, tokenizer, cfg: DecoderConfig) -> tuple[list[str], float, float]:
    """Texts, LM load seconds, decode seconds (one utterance at a time, as pyctcdecode)."""
    start = time.perf_counter()
    decoder = BeamSearchDecoder(tokenizer, resolve_decoder(cfg))
    loaded = time.perf_counter()
    texts = [tokenizer.decode(decoder(lp[None], torch.tensor([len(lp)]))[0]) for lp in log_probs]
    return texts, loaded - start, time.perf_counter() - loaded


def pyctcdecode_python(work: Path) -> Path:
    venv = work / ".venv-pyctcdecode"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making {venv} with {' '.join(PYCTCDECODE)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PYCTCDECODE], check=True)
    return python


def run_pyctcdecode(log_probs, tokenizer, lm: Path, beam_size: int, alpha: float, beta: float, work: Path):
    """Texts, LM load seconds, decode seconds of pyctcdecode in its virtualenv."""
    np.savez(work / "log_probs.npz", **{f"u{i}": np.asarray(lp) for i, lp in enumerate(log_probs)})
    labels = ["" if i == BLANK else " " if piece == WORD_SEPARATOR else piece for i, piece in enumerate(tokenizer.vocab)]
    job = {"log_probs": str(work / "log_probs.npz"), "labels": labels, "lm": str(lm),
           "unigrams": read_lexicon(lexicon_path(lm)), "beam_size": beam_size, "alpha": alpha, "beta": beta}
    (work / "pyctcdecode_job.json").write_text(json.dumps(job))
    (work / "pyctcdecode_runner.py").write_text(RUNNER)
    result = subprocess.run([str(pyctcdecode_python(work)), str(work / "pyctcdecode_runner.py"),
                             str(work / "pyctcdecode_job.json")], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"pyctcdecode failed:\n{result.stderr[-3000:]}")
    out = json.loads(result.stdout)
    return out["texts"], out["load_s"], out["decode_s"]


def main():
    args = parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    log_probs, references, tokenizer, lm = model_set(args) if args.model else simulated_set(args, work)
    tuned = read_tuned(lm)
    lm_weight = args.lm_weight if args.lm_weight is not None else tuned.get("lm_weight", 0.5 * math.log(10))
    word_score = args.word_score if args.word_score is not None else tuned.get("word_score", 1.0)
    alpha = lm_weight / math.log(10)
    steps = sum(len(lp) for lp in log_probs)
    print(f"{len(log_probs)} utterances, {steps} output steps, vocabulary {len(tokenizer)}; LM {lm}\n"
          f"beam {args.beam_size}, threshold {args.beam_threshold}; LM weight {lm_weight:.3f} (alpha {alpha:.3f}), "
          f"word score {word_score}; one thread each")

    rows = []
    start = time.perf_counter()
    greedy = [tokenizer.decode(greedy_decode(lp[None], torch.tensor([len(lp)]))[0]) for lp in log_probs]
    rows.append(("greedy", 0.0, time.perf_counter() - start, wer(greedy, references)))
    beam = DecoderConfig("beam", beam_size=args.beam_size, beam_threshold=args.beam_threshold)
    no_lm = run_ours(log_probs, tokenizer, beam)
    rows.append(("ours: beam, no LM", no_lm[1], no_lm[2], wer(no_lm[0], references)))
    ours = run_ours(log_probs, tokenizer, replace(beam, lm=str(lm), lm_weight=lm_weight, word_score=word_score))
    rows.append(("ours: beam + LM", ours[1], ours[2], wer(ours[0], references)))
    theirs = run_pyctcdecode(log_probs, tokenizer, lm, args.beam_size, alpha, word_score, work)
    rows.append(("pyctcdecode: beam + LM", theirs[1], theirs[2], wer(theirs[0], references)))

    print(f"\n{'decoder':<24} {'LM load (s)':>11} {'decode (s)':>10} {'ms/utt':>7} {'WER':>7}")
    for name, load_s, decode_s, error_rate in rows:
        print(f"{name:<24} {load_s:>11.2f} {decode_s:>10.2f} {1000 * decode_s / len(log_probs):>7.1f} "
              f"{100 * error_rate:>6.2f}%")
    print(f"\nbeam + LM: ours is {theirs[2] / ours[2]:.1f}x faster than pyctcdecode at "
          f"{100 * rows[2][3]:.2f}% vs {100 * rows[3][3]:.2f}% WER")


if __name__ == "__main__":
    main()
