"""The `asr` command. Results go to stdout (`--format json` for machines), progress and errors to stderr."""

import argparse
import json
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from .formats import EXPORT_FORMATS, QUANTIZE, TRANSCRIPT_FORMATS

log = logging.getLogger("asr")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    from .audio import AudioError
    from .bundle import BundleError
    from .config import ConfigError
    from .download import DownloadError

    try:
        return args.run(args) or 0
    except (AudioError, BundleError, ConfigError, DownloadError, FileNotFoundError, MemoryError,
            ValueError) as err:
        print(f"asr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `asr transcribe ... | head`: the reader has gone, stop quietly
        sys.stdout = open(os.devnull, "w")
        return 1


def setup_logging() -> None:
    """asr's own log lines to stderr (one handler however often main runs); Lightning configures its own logger."""
    if not log.handlers:
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

    p = commands.add_parser("download", help="download, verify and extract a corpus")
    p.add_argument("corpus", choices=["librispeech"])
    p.add_argument("out", help="folder for the archives and what they hold (OUT/LibriSpeech/SUBSET/...)")
    p.add_argument("--subsets", nargs="+", default=["dev-clean", "dev-other", "test-clean", "test-other",
                                                    "train-clean-100"], help="default: the 100 h set + dev + test")
    p.add_argument("--lm-text", action="store_true", help="also librispeech-lm-norm.txt (OpenSLR 11, 4.3 GB)")
    p.add_argument("--mirror", default=None, help="base URL holding 12/SUBSET.tar.gz and 11/... (default: OpenSLR)")
    p.add_argument("--checksums", help="`sha256sum` output to verify against instead of the official sums")
    p.set_defaults(run=run_download)

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

    p = commands.add_parser("export", help="make a model bundle from a training checkpoint, or export a model "
                                           "for deployment (ONNX, TorchScript)")
    p.add_argument("source", help="a checkpoint of asr train (.ckpt), a model bundle, or 'default' (the model "
                                  "shipped with asr)")
    p.add_argument("out", help="the file to write: model.safetensors, model.onnx, model.pt; ONNX and TorchScript "
                               "get OUT.json beside them (e.g. model.onnx.json: vocabulary, front-end settings)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="bundle",
                   help="bundle (default): safetensors for asr; onnx: for onnxruntime; torchscript: for "
                        "torch.jit.load. Both take waveforms + lengths and give CTC log-probs + lengths")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="weights of a bundle (default: float32)")
    p.add_argument("--quantize", choices=QUANTIZE, help="int8 LSTM and linear weights (ONNX and TorchScript)")
    p.set_defaults(run=run_export)

    p = commands.add_parser("check-manifest", help="list every problem of manifests: format, audio, transcripts")
    p.add_argument("manifests", nargs="+")
    p.add_argument("--config", default="small",
                   help="the training config whose tokenizer and model the transcripts must suit (default: small)")
    p.add_argument("--decode", action="store_true",
                   help="decode all the audio, not just the headers (slower; finds corruption past the header)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(run=run_check_manifest)

    p = commands.add_parser("evaluate", help="WER and CER of a model on manifests")
    p.add_argument("manifests", nargs="+")
    add_model_arguments(p)
    add_decoder_arguments(p)
    p.add_argument("--out", help="write one JSON line per utterance: reference, hypothesis, errors")
    p.set_defaults(run=run_evaluate)

    p = commands.add_parser("synth", help="synthesize a speech corpus in LibriSpeech's layout")
    p.add_argument("text_files", nargs="+", metavar="TEXT_FILE", help="sentences, one per line")
    p.add_argument("--out", required=True, help="folder for the corpus (SPLIT/SPEAKER/CHAPTER/...) and manifests")
    p.add_argument("--hours", type=float, required=True, help="hours of speech over all splits")
    p.add_argument("--voices", nargs="+", metavar="VOICE",
                   help="engines (espeak-ng, mbrola, flite, festival, pico), ENGINE:VOICE ids or globs such as "
                        "'espeak-ng:en-gb*' (default: every training voice installed); the voices reserved for "
                        "evaluation are refused")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--augment-share", type=float, default=0.3, help="share of utterances augmented with sox")
    p.add_argument("--dev-share", type=float, default=0.05)
    p.add_argument("--test-share", type=float, default=0.05)
    p.add_argument("--exclude", nargs="+", default=[], metavar="MANIFEST",
                   help="manifests whose sentences are never read (held-out evaluation sets)")
    p.set_defaults(run=run_synth)

    p = commands.add_parser("transcribe", help="transcribe audio files or folders")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    add_model_arguments(p, formats=TRANSCRIPT_FORMATS)
    p.add_argument("--output-dir", type=Path, help="write one file per input here (NAME.txt, .json, .srt, ...)")
    p.add_argument("--plot", type=Path, metavar="OUT.png",
                   help="draw the features, CTC posteriors and word alignment of the one input file")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no info messages; errors still print")
    add_decoder_arguments(p)
    p.set_defaults(run=run_transcribe)

    p = commands.add_parser("serve", help="an HTTP transcription service with OpenAI's API "
                                          "(POST /v1/audio/transcriptions, GET /health, GET /metrics)")
    add_load_arguments(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every network, "
                        "with no authentication)")
    p.add_argument("--port", type=int, default=8000, help="default: 8000; 0: a free port. The URL is printed")
    p.add_argument("--max-batch", type=int, default=16, help="chunks decoded together at most (default: 16)")
    p.add_argument("--max-wait-ms", type=float, default=20.0,
                   help="how long a batch waits for more requests to fill it (default: 20)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests admitted at once; more are answered 503 with Retry-After (default: 64)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="larger uploads get 413 (default: 25)")
    add_decoder_arguments(p)
    p.set_defaults(run=run_serve)

    p = commands.add_parser("lm", help="n-gram language models for beam search")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("build", help="estimate a word n-gram LM and its lexicon from text")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="text files, one sentence a line (normalised here)")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--out", required=True, help="lm.arpa, or lm.bin for a KenLM binary; the lexicon goes beside it")
    p.add_argument("--estimator", choices=["auto", "kenlm", "kaldingram"], default="auto",
                   help="kenlm: lmplz, modified Kneser-Ney (scripts/build_kenlm.sh); kaldingram: Kneser-Ney in "
                        "Python, for small and medium text; auto (default): kenlm if lmplz is on the PATH")
    p.set_defaults(run=run_lm_build)

    p = commands.add_parser("tune-lm", help="search LM weight and word score of beam search on a dev set")
    p.add_argument("--manifest", required=True, help="the dev set")
    p.add_argument("--lm", required=True, help="the LM; the best values go to LM.tuned.json beside it")
    p.add_argument("--lexicon", help="words to spell (default: LM.lexicon.txt)")
    p.add_argument("--beam-size", type=int, default=50)
    p.add_argument("--beam-threshold", type=float, default=25.0)
    p.add_argument("--lm-weights", type=floats, help="grid values, e.g. 0,0.5,1,2 (default: 0 to 3)")
    p.add_argument("--word-scores", type=floats, help="grid values, e.g. -1,0,1 (default: -2 to 2)")
    p.add_argument("--random", type=int, metavar="N", help="N random points instead of the grid")
    p.add_argument("--seed", type=int, default=0, help="of the random points")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes (default: one per core)")
    add_model_arguments(p)
    p.set_defaults(run=run_tune_lm)

    p = commands.add_parser("inspect", help="look inside a trained model")
    views = p.add_subparsers(dest="view", required=True, metavar="VIEW")
    p = views.add_parser("gates", help="plot one LSTM layer's gates and cell state over an utterance")
    p.add_argument("file", help="an audio file")
    p.add_argument("--model", help="model bundle (default: the model shipped with asr)")
    p.add_argument("--layer", type=int, default=0, help="the BiLSTM layer, counted from 0 (default: 0)")
    p.add_argument("--direction", choices=["forward", "backward"], default="forward")
    p.add_argument("--units", type=int, default=32, help="units in the heat map, the most active ones (default: 32)")
    p.add_argument("--out", default="gates.png", help="the PNG to write (default: gates.png)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: print the PNG's path; json: also the curves")
    p.set_defaults(run=run_inspect_gates)
    return parser


def add_model_arguments(p: argparse.ArgumentParser, formats=("text", "json")) -> None:
    add_load_arguments(p)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--format", choices=formats, default="text")


def add_load_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model bundle (default: the model shipped with asr)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--quantize", choices=QUANTIZE, help="int8: LSTM and linear layers with int8 weights, for "
                                                        "CPU inference (faster, slightly less accurate)")


def add_decoder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", choices=["greedy", "beam", "choice"],
                   help="default: greedy, beam if --lm or a beam option is given, choice with --choices")
    p.add_argument("--lm", help="KenLM word n-gram, ARPA or binary, from `asr lm build` (implies --decoder beam)")
    p.add_argument("--lexicon", help="words beam search may spell (default with --lm: LM.lexicon.txt)")
    p.add_argument("--beam-size", type=int)
    p.add_argument("--beam-threshold", type=float)
    p.add_argument("--lm-weight", type=float, help="default: the value `asr tune-lm` found, else 2")
    p.add_argument("--word-score", type=float, help="default: the value `asr tune-lm` found, else 0")
    p.add_argument("--unk-score", type=float, help="score of a word outside the lexicon (default: -inf, none)")
    p.add_argument("--choices", help="closed-set recognition: a file of the transcripts (words, commands) every "
                                     "utterance is one of, one per line; each gets the likeliest (implies "
                                     "--decoder choice)")


BEAM_OPTIONS = ("lm", "lexicon", "beam_size", "beam_threshold", "lm_weight", "word_score", "unk_score")


def decoder_config(args):
    """The DecoderConfig the options ask for, or None for the model's default (greedy, or the default
    model's own LM)."""
    from .decoding import DecoderConfig

    options = {name: getattr(args, name) for name in BEAM_OPTIONS if getattr(args, name) is not None}
    kind = args.decoder or ("choice" if args.choices else "beam" if options else None)
    if kind == "choice" and options:
        raise ValueError(f"--{next(iter(options)).replace('_', '-')} is a beam-search option: the choice decoder "
                         "(--choices) takes none")
    return DecoderConfig(kind, choices=args.choices, **options) if kind else None


def floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def run_prepare(args) -> None:
    from .data import prepare_librispeech

    for subset, path in prepare_librispeech(args.root, args.out).items():
        print(f"{subset}\t{path}")


def run_download(args) -> None:
    from .download import MIRROR, download_librispeech, read_checksums

    checksums = read_checksums(args.checksums) if args.checksums else None
    for path in download_librispeech(args.out, args.subsets, args.lm_text, args.mirror or MIRROR, checksums):
        print(path)


def run_tokenizer(args) -> None:
    from .manifest import read_manifest
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

    from .export import export, load_source

    if args.dtype != "float32" and args.format != "bundle":
        raise ValueError(f"--dtype is for bundles; --format {args.format} is float32 (--quantize int8 shrinks "
                         "it)")
    print(export(*load_source(args.source), args.out, args.format, args.quantize, getattr(torch, args.dtype)))


def run_check_manifest(args) -> int:
    from .check import check_manifest, report_lines
    from .text import build_tokenizer
    from .training import load_experiment_config

    cfg = load_experiment_config(args.config)
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.model.vocab_size = len(tokenizer)
    bad = 0
    for manifest in args.manifests:
        lines, problems = check_manifest(manifest, tokenizer, cfg.model, max(cfg.data.speed_perturb, default=1.0),
                                         args.decode)
        print("\n".join(report_lines(manifest, lines, problems, args.format)), flush=True)
        bad += len(problems)
    return 1 if bad else 0


def run_evaluate(args) -> int:
    from .manifest import read_manifest
    from .evaluate import evaluate
    from .transcribe import load_model

    recognizer = load_model(args.model, args.device, decoder_config(args), args.quantize)
    rows, skipped = [], 0
    for manifest in args.manifests:
        report = evaluate(recognizer, read_manifest(manifest), args.batch_size)
        c = report.counts
        if args.format == "json":
            print(json.dumps({"manifest": manifest, "wer": c.wer, "cer": c.cer, "word_errors": c.word_errors,
                              "words": c.words, "utterances": len(report.rows), "exact": report.exact,
                              "skipped": report.skipped}))
        else:
            print(f"{manifest}\tWER {100 * c.wer:.2f}% ({c.word_errors}/{c.words})\t"
                  f"CER {100 * c.cer:.2f}%\t{report.exact}/{len(report.rows)} utterances exactly right, "
                  f"{report.skipped} skipped")
        rows += [{"manifest": manifest, **row} for row in report.rows]
        skipped += report.skipped
    if args.out:
        Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 1 if skipped else 0


def run_transcribe(args) -> int:
    from .transcribe import find_audio, load_model
    from .writers import SUBTITLES, render

    if args.quiet:
        log.setLevel(logging.WARNING)
    files = list(find_audio(args.inputs))
    if args.format in SUBTITLES and len(files) > 1 and not args.output_dir:
        raise ValueError(f"--format {args.format} makes one document per file: give --output-dir for {len(files)} files")
    if args.plot:  # before the model loads
        from .plot import check_plottable

        check_plottable(files)
    if args.output_dir:  # before the model loads: an unusable folder fails at once
        args.output_dir.mkdir(parents=True, exist_ok=True)
    recognizer = load_model(args.model, args.device, decoder_config(args), args.quantize)
    failed, written, result = [], set(), None
    with progress_bar(files, args.quiet) as progress:
        for result in recognizer.transcribe(files, args.batch_size, on_error=failed.append,
                                            words=args.format != "text" or bool(args.plot), progress=progress):
            if args.output_dir:
                write_output(args.output_dir, result, args.format, written)
            elif args.format == "text" and len(files) > 1:  # several: path <TAB> text
                print(f"{result.audio_filepath}\t{result.text}", flush=True)
            else:
                print(render(result, args.format), end="", flush=True)
    if args.plot and result:
        from .plot import plot_file

        log.info("wrote %s", plot_file(recognizer, files[0], result, args.plot))
    for err in failed:
        print(f"asr transcribe: skipped {err}", file=sys.stderr)
    if failed:
        print(f"asr transcribe: {len(failed)} file(s) could not be transcribed", file=sys.stderr)
    return 1 if failed else 0


@contextmanager
def progress_bar(files: list, quiet: bool):
    """A callback that advances a bar on stderr by seconds of audio done, over the inputs' total, when stderr
    is a terminal and not --quiet; else None."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from .audio import AudioError, audio_duration

    def seconds(source) -> float | None:
        try:
            return audio_duration(source) if isinstance(source, (str, os.PathLike)) else None
        except AudioError:  # reported when its turn comes
            return 0.0

    durations = [seconds(f) for f in files]
    total = None if None in durations else sum(durations)  # stdin: length unknown
    columns = (TextColumn("transcribing"), BarColumn(), TextColumn("{task.completed:.0f}{task.fields[of]} s"),
               TimeRemainingColumn())
    # results printed to a terminal go above the bar; to a pipe or file they go on as before
    with Progress(*columns, console=Console(stderr=True), redirect_stdout=sys.stdout.isatty()) as bar:
        task = bar.add_task("transcribing", total=total, of="" if total is None else f"/{total:.0f}")
        yield lambda done: bar.advance(task, done)


def write_output(folder: Path, transcript, fmt: str, written: set[Path]) -> None:
    """FOLDER/NAME.EXT for the audio file NAME.wav; NAME-2.EXT, ... when inputs share a name."""
    from .writers import EXTENSIONS, render

    stem, n = Path(transcript.audio_filepath).stem.strip("<>"), 1  # "<stdin>" -> stdin.txt
    while (path := folder / f"{stem}{f'-{n}' if n > 1 else ''}.{EXTENSIONS[fmt]}") in written:
        n += 1
    path.write_text(render(transcript, fmt), encoding="utf-8")
    written.add(path)


def run_synth(args) -> None:
    """Make the corpus; print "SPLIT<TAB>MANIFEST" lines."""
    from .synth import synthesize_corpus

    manifests = synthesize_corpus(
        args.text_files, args.out, args.hours, voices=args.voices, seed=args.seed, jobs=args.jobs,
        augment_share=args.augment_share, dev_share=args.dev_share, test_share=args.test_share,
        exclude=args.exclude,
    )
    for split, path in manifests.items():
        print(f"{split}\t{path}")


def run_serve(args) -> None:
    from .serve import serve
    from .transcribe import load_model

    recognizer = load_model(args.model, args.device, decoder_config(args), args.quantize)
    serve(recognizer, args.host, args.port, str(args.model or "default"), max_batch=args.max_batch,
          max_wait=args.max_wait_ms / 1000, max_queue=args.max_queue, max_upload=round(args.max_upload_mb * 1e6))


def run_lm_build(args) -> None:
    from .lm import build_lm

    print(build_lm(args.texts, args.out, args.order, args.estimator))


def run_tune_lm(args) -> None:
    from .manifest import read_manifest
    from .decoding import BeamSearchDecoder, DecoderConfig
    from .lm import write_tuned
    from .transcribe import load_model
    from .tuning import LM_WEIGHTS, WORD_SCORES, best, dev_log_probs, greedy_counts, grid, random_points, tune

    recognizer = load_model(args.model, args.device, quantize=args.quantize)
    decoder = BeamSearchDecoder(recognizer.tokenizer, DecoderConfig(
        "beam", beam_size=args.beam_size, beam_threshold=args.beam_threshold, lm=args.lm, lexicon=args.lexicon))
    dev = dev_log_probs(recognizer, read_manifest(args.manifest), args.batch_size)
    points = (random_points(args.random, args.seed) if args.random
              else grid(args.lm_weights or LM_WEIGHTS, args.word_scores or WORD_SCORES))
    trials = tune(decoder, dev, points, args.jobs)
    for t in sorted(trials, key=lambda t: (t.lm_weight, t.word_score)):
        log.info("lm_weight %6.3f  word_score %6.3f  WER %6.2f%%", t.lm_weight, t.word_score, 100 * t.counts.wer)
    top, greedy = best(trials), greedy_counts(dev, recognizer.tokenizer)
    result = {"lm_weight": top.lm_weight, "word_score": top.word_score, "beam_size": args.beam_size,
              "wer": top.counts.wer, "greedy_wer": greedy.wer, "words": top.counts.words, "points": len(trials),
              "model": str(args.model or "default"), "manifest": args.manifest}
    path = write_tuned(args.lm, result)
    if args.format == "json":
        print(json.dumps({**result, "tuned": str(path)}))
    else:
        print(f"lm_weight {top.lm_weight}\tword_score {top.word_score}\tWER {100 * top.counts.wer:.2f}% "
              f"(greedy {100 * greedy.wer:.2f}%)\t-> {path}")


def run_inspect_gates(args) -> None:
    from .gates import gate_curves, plot_gates
    from .transcribe import load_model

    recognizer = load_model(args.model, args.device)
    curves, features = gate_curves(recognizer.model, recognizer.tokenizer, args.file, args.layer, args.direction,
                                   args.units, recognizer.device)
    out = plot_gates(curves, features, args.out)
    print(json.dumps({"plot": str(out), **asdict(curves)}) if args.format == "json" else out)
