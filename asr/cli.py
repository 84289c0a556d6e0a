"""The `asr` command. Results go to stdout (`--format json` for machines), progress and errors to stderr."""

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

log = logging.getLogger("asr")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    from .audio import AudioError
    from .bundle import BundleError
    from .config import ConfigError
    from .data import ManifestError

    try:
        return args.run(args) or 0
    except (AudioError, BundleError, ConfigError, ManifestError, FileNotFoundError, ValueError) as err:
        print(f"asr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `asr transcribe ... | head`: the reader has gone, stop quietly
        sys.stdout = open(os.devnull, "w")
        return 1


def setup_logging() -> None:
    """asr's own log lines to stderr; Lightning configures its own logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="Train, evaluate and run speech recognizers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("prepare", help="make manifests from a corpus on disk")
    p.add_argument("corpus", choices=["librispeech"])
    p.add_argument("root", help="folder in LibriSpeech layout (SUBSET/SPEAKER/CHAPTER/*.flac + *.trans.txt)")
    p.add_argument("out", help="folder for the manifests, one SUBSET.jsonl per subset")
    p.set_defaults(run=run_prepare)

    p = commands.add_parser("tokenizer", help="train a SentencePiece tokenizer on manifest transcripts")
    p.add_argument("manifests", nargs="+")
    p.add_argument("--out", required=True, help="the .model file to write")
    p.add_argument("--vocab-size", type=int, default=256)
    p.add_argument("--type", choices=["unigram", "bpe"], default="unigram")
    p.set_defaults(run=run_tokenizer)

    p = commands.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="a YAML file, or the name of one in conf/ (tiny, small, ds2)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.train_manifests=[a.jsonl]")
    p.add_argument("--resume", action="store_true", help="continue from the experiment's last checkpoint")
    p.set_defaults(run=run_train)

    p = commands.add_parser("export", help="make a model bundle from a training checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("out", help="the bundle file to write (.safetensors)")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.set_defaults(run=run_export)

    p = commands.add_parser("evaluate", help="WER and CER of a model on manifests")
    p.add_argument("manifests", nargs="+")
    add_model_arguments(p)
    p.add_argument("--out", help="write one JSON line per utterance: reference, hypothesis, errors")
    p.set_defaults(run=run_evaluate)

    p = commands.add_parser("transcribe", help="transcribe audio files or folders")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    add_model_arguments(p)
    p.set_defaults(run=run_transcribe)
    return parser


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model bundle (default: the model shipped with asr)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--format", choices=["text", "json"], default="text")


def run_prepare(args) -> None:
    from .data import prepare_librispeech

    for subset, path in prepare_librispeech(args.root, args.out).items():
        print(f"{subset}\t{path}")


def run_tokenizer(args) -> None:
    from .data import read_manifest
    from .text import train_sentencepiece

    texts = [u.text for manifest in args.manifests for u in read_manifest(manifest)]
    print(train_sentencepiece(texts, args.out, vocab_size=args.vocab_size, model_type=args.type))


def run_train(args) -> None:
    from .bundle import bundle_from_checkpoint
    from .training import load_experiment_config, train

    cfg = load_experiment_config(args.config, args.overrides)
    checkpoints = train(cfg, resume=args.resume)
    if checkpoints.best_model_path and is_global_zero():
        bundle = bundle_from_checkpoint(checkpoints.best_model_path, Path(cfg.exp_dir) / "model.safetensors")
        print(bundle)


def is_global_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank == 0


def run_export(args) -> None:
    import torch

    from .bundle import bundle_from_checkpoint

    print(bundle_from_checkpoint(args.checkpoint, args.out, getattr(torch, args.dtype)))


def run_evaluate(args) -> int:
    from .data import read_manifest
    from .evaluate import evaluate
    from .transcribe import load_model

    recognizer = load_model(args.model, args.device)
    rows, skipped = [], 0
    for manifest in args.manifests:
        report = evaluate(recognizer, read_manifest(manifest), args.batch_size)
        c = report.counts
        if args.format == "json":
            print(json.dumps({"manifest": manifest, "wer": c.wer, "cer": c.cer, "word_errors": c.word_errors,
                              "words": c.words, "utterances": len(report.rows), "skipped": report.skipped}))
        else:
            print(f"{manifest}\tWER {100 * c.wer:.2f}% ({c.word_errors}/{c.words})\t"
                  f"CER {100 * c.cer:.2f}%\t{len(report.rows)} utterances, {report.skipped} skipped")
        rows += [{"manifest": manifest, **row} for row in report.rows]
        skipped += report.skipped
    if args.out:
        Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 1 if skipped else 0


def run_transcribe(args) -> int:
    from .transcribe import find_audio, load_model

    recognizer = load_model(args.model, args.device)
    files = list(find_audio(args.inputs))
    failed = []
    for result in recognizer.transcribe(files, args.batch_size, on_error=failed.append):
        if args.format == "json":
            print(json.dumps(asdict(result)), flush=True)
        else:  # one file: just its text; several: path <TAB> text
            print(result.text if len(files) == 1 else f"{result.audio_filepath}\t{result.text}", flush=True)
    for err in failed:
        print(f"asr transcribe: skipped {err}", file=sys.stderr)
    if failed:
        print(f"asr transcribe: {len(failed)} file(s) could not be transcribed", file=sys.stderr)
    return 1 if failed else 0
