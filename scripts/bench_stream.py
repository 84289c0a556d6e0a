"""Streaming recognition on this CPU: how soon words show while the speaker is still talking, how the streaming
model's finals score against the bidirectional model's whole-file transcripts, the real-time factor of each chunk,
and memory over one long stream; the streaming model against the bidirectional one (the baseline) in one run.

    python scripts/bench_stream.py data/natural/real-dev.jsonl                    # all four parts (1 h stream)
    python scripts/bench_stream.py data/natural/real-dev.jsonl --limit 5 --hours 0.02   # a quick check
    python scripts/bench_stream.py M1.jsonl M2.jsonl --chunk-ms 200 --skip-memory --json

1. Partial latency: each utterance is streamed, with --tail-ms of silence after it (for the endpoint), a chunk of
   --chunk-ms at a time through `Recognizer.stream()`. Chunk k arrives when its audio has been spoken, at
   (k + 1) * chunk seconds; the stream processes chunks in order, one at a time, so a feed starts at its chunk's
   arrival or when the previous feed ended, whichever is later, and the events it returns happen when it ends (a
   virtual real-time clock, from the wall time of each feed; with --sleep the chunks are really paced and the
   clock is read). A reference word's end in the audio is that of the bidirectional model's CTC forced alignment of
   the reference transcript (asr.core.decoding.word_timestamps on its log-probs and the reference's tokens;
   utterances it cannot align are left out). The word appears in the first event (partial or final) whose text, the
   utterance's finals so far and the partial under way, aligned to the reference words by jiwer, matches it; its
   latency is that event's time minus the word's end. Words never shown are counted and left out.
2. WER: the stream's finals joined, per manifest, against the bidirectional model's transcript of the whole file
   (what `Recognizer.transcribe` decodes), both greedy and with beam search and the LM (the streaming model's own
   LM, the shipped one, unless --lm), and the ratio of the two.
3. Real-time factor per chunk: the wall time of each feed over the chunk's duration (feeds that end an utterance
   include its final's decoding), with --threads for both models' networks.
4. Memory: one stream fed --hours of audio, the utterances in turn with 1 s of silence between them, as fast as it
   goes (no pacing), beam search with the LM; the process's RSS (VmRSS) at 1 min, 10 %, 50 % and 100 % of it.

Parts 1-3 come from the same streams: one pass over the utterances per decoder (greedy, then the LM), the feed
times of each pass its own. Each part can be skipped; --limit takes the first N utterances of each manifest. The
machine's load average is printed beside the figures: other work on the CPU slows the feeds.
"""

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jiwer
import numpy as np

from asr.core.audio import SAMPLE_RATE, load_audio
from asr.core.config import ConfigError
from asr.core.decoding import DecoderConfig, word_timestamps
from asr.core.errors import AsrError
from asr.core.manifest import read_manifest
from asr.core.metrics import ErrorCounts, error_counts
from asr.core.text import normalize
from asr.inference.chunking import chunks
from asr.inference.live import rechunked
from asr.inference.streaming import EndpointConfig, StreamEvent
from asr.inference.transcribe import Recognizer, joined, load_model

TARGET_P50_MS, TARGET_P95_MS, TARGET_WER_RATIO = 300, 600, 1.3
GAP_SECONDS = 1.0  # silence between the utterances of the long stream
DECODERS = ("greedy", "lm")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifests", nargs="+", type=Path, help="JSON-lines manifests (audio_filepath, duration, text)")
    p.add_argument("--model", default="streaming", help="the streaming model (default: the shipped 'streaming')")
    p.add_argument("--baseline", default="default", help="the bidirectional model (default: the shipped 'default')")
    p.add_argument("--lm", help="KenLM for both models' beam search (default: each model's own, the shipped LM)")
    p.add_argument("--chunk-ms", type=float, default=100.0, help="audio fed to the stream at a time (default: 100)")
    p.add_argument("--min-steps", type=int, default=1, help="Recognizer.stream's min_steps (default: 1)")
    p.add_argument("--tail-ms", type=float, default=500.0,
                   help="silence streamed after each utterance, for the endpoint (default: 500)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each network (default: 1)")
    p.add_argument("--hours", type=float, default=1.0, help="audio fed to the long stream (default: 1.0)")
    p.add_argument("--limit", type=int, help="the first N utterances of each manifest")
    p.add_argument("--decoders", nargs="+", choices=DECODERS, default=list(DECODERS),
                   help="passes over the utterances: greedy, lm (default: both)")
    p.add_argument("--sleep", action="store_true", help="really pace the chunks at real time (parts 1-3)")
    for part in ("latency", "wer", "rtf", "memory"):
        p.add_argument(f"--skip-{part}", action="store_true")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object instead of tables")
    return p.parse_args(argv)


@dataclass
class Utterance:
    manifest: str
    name: str
    reference: str  # normalised
    wave: np.ndarray  # (S,) float32, 16 kHz
    word_ends: list[float] | None = None  # seconds: the bidirectional alignment's end of each reference word
    baseline: dict[str, str] = field(default_factory=dict)  # decoder -> the bidirectional model's transcript


@dataclass
class Pass:
    """One decoder's streams over all the utterances."""
    latencies: dict[str, list[float]] = field(default_factory=dict)  # manifest -> seconds, words shown
    unseen: dict[str, int] = field(default_factory=dict)  # manifest -> aligned words never shown
    counts: dict[str, ErrorCounts] = field(default_factory=dict)  # manifest -> the finals' errors
    baseline_counts: dict[str, ErrorCounts] = field(default_factory=dict)
    feed_seconds: list[float] = field(default_factory=list)
    chunk_seconds: list[float] = field(default_factory=list)


def recognizers(model, threads: int, lm: str | None) -> dict[str, Recognizer]:
    """{"greedy": ..., "lm": ...}: `model` loaded once, its network shared by a greedy and a beam-search decoder."""
    greedy = load_model(model, decoder=DecoderConfig("greedy"), threads=threads)
    return {"greedy": greedy, "lm": Recognizer(greedy.network, DecoderConfig("beam", lm=lm), greedy.path)}


def decoder_label(recognizer: Recognizer) -> str:
    """A pass's name in the tables: greedy, beam+LM (beam search with an LM) or beam (without one)."""
    cfg = recognizer.decoder_config
    return "greedy" if cfg.kind == "greedy" else "beam+LM" if cfg.lm else "beam"


def read_utterances(manifests: list[Path], limit: int | None) -> list[Utterance]:
    utterances = []
    for manifest in manifests:
        rows = [u for u in read_manifest(manifest) if normalize(u.text)][:limit]
        for u in rows:
            utterances.append(Utterance(manifest.stem, u.audio_filepath.name, normalize(u.text),
                                        load_audio(u.audio_filepath)))
    return utterances


def run_baseline(baseline: dict[str, Recognizer], utterances: list[Utterance], align: bool, decode: list[str]):
    """The bidirectional model over each utterance: the reference's word ends (`align`) and its transcripts, decoded
    as `Recognizer.transcribe` decodes a file (in chunks cut at pauses past MAX_CHUNK_SECONDS, the chunks' texts
    joined), without transcribe itself, whose mallopt (map_large_allocations) would change the memory part's RSS."""
    rec = baseline["greedy"]
    step = rec.network.cfg.output_step_seconds
    for u in utterances:
        outputs = [rec.log_probs([chunk.wave]) for chunk in chunks([(u.wave, SAMPLE_RATE)])]
        for name in decode:
            u.baseline[name] = joined(baseline[name].decoded(log_probs, lengths, words=False)[0][0]
                                      for log_probs, lengths in outputs)
        if not align:
            continue
        log_probs, lengths = outputs[0] if len(outputs) == 1 else rec.log_probs([u.wave])
        try:
            tokens = rec.tokenizer.encode(u.reference)
            words = word_timestamps(log_probs[0, :lengths[0]], tokens, rec.tokenizer, step)
        except ValueError:  # unspellable, or too short for its tokens
            continue
        if [w.word for w in words] == u.reference.split():
            u.word_ends = [w.end for w in words]


def stream(rec: Recognizer, wave: np.ndarray, chunk: int, min_steps: int, sleep: bool
           ) -> tuple[list[tuple[float, StreamEvent]], list[float], list[float]]:
    """Stream `wave` a chunk at a time -> ((time, event) of each event, wall seconds of each feed, seconds of each
    chunk); times are seconds from the start of the audio, on the virtual real-time clock (or, with `sleep`, the
    real one)."""
    s = rec.stream(EndpointConfig(), min_steps)
    events, feeds, durations = [], [], []
    busy_until, spoken, start = 0.0, 0, time.perf_counter()
    for k in range(0, len(wave), chunk):
        piece = wave[k:k + chunk]
        spoken += len(piece)
        arrival = spoken / SAMPLE_RATE
        if sleep:
            time.sleep(max(0.0, start + arrival - time.perf_counter()))
        t0 = time.perf_counter()
        new = s.feed(piece)
        t1 = time.perf_counter()
        busy_until = t1 - start if sleep else max(arrival, busy_until) + (t1 - t0)
        feeds.append(t1 - t0)
        durations.append(len(piece) / SAMPLE_RATE)
        events += [(busy_until, e) for e in new]
    t0 = time.perf_counter()
    new = s.finish()
    t1 = time.perf_counter()
    busy_until = t1 - start if sleep else max(spoken / SAMPLE_RATE, busy_until) + (t1 - t0)
    events += [(busy_until, e) for e in new]
    return events, feeds, durations


def first_shown(reference: str, events: list[tuple[float, StreamEvent]]) -> list[float | None]:
    """For each reference word, the time of the first event whose text (finals so far + the partial) matches it."""
    words = reference.split()
    shown: list[float | None] = [None] * len(words)
    finals = []
    for at, event in events:
        text = " ".join([*finals, event.text]).split()
        if event.type == "final" and event.text:
            finals.append(event.text)
        if not text:
            continue
        for chunk in jiwer.process_words(reference, " ".join(text)).alignments[0]:
            if chunk.type == "equal":
                for i in range(chunk.ref_start_idx, chunk.ref_end_idx):
                    if shown[i] is None:
                        shown[i] = at
    return shown


def run_pass(rec: Recognizer, utterances: list[Utterance], decoder: str, args) -> Pass:
    chunk = max(1, round(args.chunk_ms / 1000 * SAMPLE_RATE))
    tail = np.zeros(round(args.tail_ms / 1000 * SAMPLE_RATE), dtype=np.float32)
    result = Pass()
    for u in utterances:
        events, feeds, durations = stream(rec, np.concatenate([u.wave, tail]), chunk, args.min_steps, args.sleep)
        result.feed_seconds += feeds
        result.chunk_seconds += durations
        finals = " ".join(e.text for _, e in events if e.type == "final" and e.text)
        counts = result.counts.setdefault(u.manifest, ErrorCounts())
        result.counts[u.manifest] = counts + error_counts(u.reference, finals)
        if decoder in u.baseline:
            before = result.baseline_counts.get(u.manifest, ErrorCounts())
            result.baseline_counts[u.manifest] = before + error_counts(u.reference, u.baseline[decoder])
        if u.word_ends is not None:
            latencies = result.latencies.setdefault(u.manifest, [])
            for end, at in zip(u.word_ends, first_shown(u.reference, events)):
                if at is None:
                    result.unseen[u.manifest] = result.unseen.get(u.manifest, 0) + 1
                else:
                    latencies.append(at - end)
    return result


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024  # kB


def long_stream(rec: Recognizer, waves: list[np.ndarray], hours: float, chunk_ms: float, min_steps: int
                ) -> tuple[list[dict], float]:
    """One stream fed `hours` of the waves in turn, 1 s of silence after each, as fast as it goes -> a row (audio,
    events so far, RSS MB) at the start, 1 min, 10 %, 50 % and 100 % of it, and the wall seconds it took."""
    total = round(hours * 3600 * SAMPLE_RATE)
    gap = np.zeros(round(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    marks = sorted({m for m in (60 * SAMPLE_RATE, total // 10, total // 2) if 0 < m < total} | {total})
    labels = {60 * SAMPLE_RATE: "1 min", total // 10: "10 %", total // 2: "50 %", total: "100 %"}

    def audio():
        left = total
        for wave in itertools.cycle(waves):
            for piece in (wave, gap):
                yield piece[:left]
                left -= min(left, len(piece))
                if not left:
                    return

    s = rec.stream(EndpointConfig(), min_steps)
    rows = [{"at": "start", "seconds": 0.0, "events": 0, "rss_mb": rss_mb()}]
    fed, events, start = 0, 0, time.perf_counter()
    for piece in rechunked(audio(), max(1, round(chunk_ms / 1000 * SAMPLE_RATE))):
        events += len(s.feed(piece))
        fed += len(piece)
        if fed == total:
            events += len(s.finish())
        while marks and fed >= marks[0]:
            mark = marks.pop(0)
            rows.append({"at": labels[mark], "seconds": round(fed / SAMPLE_RATE, 1), "events": events,
                         "rss_mb": rss_mb()})
    return rows, time.perf_counter() - start


def percentile(values, q) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def latency_rows(passes: dict[str, Pass], manifests: list[str]) -> list[dict]:
    rows = []
    for decoder, result in passes.items():
        groups = [(m, result.latencies.get(m, []), result.unseen.get(m, 0)) for m in manifests]
        if len(manifests) > 1:
            groups.append(("all", [x for m in manifests for x in result.latencies.get(m, [])],
                           sum(result.unseen.values())))
        for manifest, values, unseen in groups:
            ms = [1000 * x for x in values]
            rows.append({"manifest": manifest, "decoder": decoder, "words": len(ms), "never_shown": unseen,
                         "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
                         "mean_ms": float(np.mean(ms)) if ms else None})
    return rows


def wer_rows(passes: dict[str, Pass], manifests: list[str], utterances: dict[str, int]) -> list[dict]:
    rows = []
    for decoder, result in passes.items():
        for m in manifests:
            ours, base = result.counts.get(m, ErrorCounts()), result.baseline_counts.get(m, ErrorCounts())
            rows.append({"manifest": m, "decoder": decoder, "utterances": utterances[m], "words": ours.words,
                         "streaming_wer": ours.wer, "bidirectional_wer": base.wer,
                         "ratio": ours.wer / base.wer if base.wer else None})
    return rows


def rtf_rows(passes: dict[str, Pass], chunk_ms: float, threads: int) -> list[dict]:
    rows = []
    for decoder, result in passes.items():
        feeds, durations = np.array(result.feed_seconds), np.array(result.chunk_seconds)
        rtf = feeds / durations
        rows.append({"decoder": decoder, "threads": threads, "chunk_ms": chunk_ms, "feeds": len(feeds),
                     "mean_rtf": float(rtf.mean()), "p95_rtf": percentile(rtf, 95),
                     "max_feed_ms": float(1000 * feeds.max()), "over_chunk": int((feeds > durations).sum())})
    return rows


def fmt(value, spec: str = ".0f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |" for row in lines)


def print_tables(report: dict) -> None:
    c = report["config"]
    names = c["decoders"]
    lm = f", LM {c['lm']}" if c["lm"] else ""
    print(f"streaming model {c['model']} vs bidirectional {c['baseline']}{lm}; chunk "
          f"{c['chunk_ms']:g} ms, {c['threads']} thread(s), {os.cpu_count()} cores; load average "
          f"{c['load_start']:.2f} at the start, {c['load_end']:.2f} at the end; "
          f"{'paced at real time (--sleep)' if c['sleep'] else 'virtual real-time clock'}")
    if "latency" in report:
        print(f"\n### Partial latency: a word's end in the audio -> its first partial or final "
              f"(targets: p50 < {TARGET_P50_MS} ms, p95 < {TARGET_P95_MS} ms; {c['aligned_utterances']} of "
              f"{c['utterances']} utterances aligned)\n")
        print(markdown(["manifest", "finals", "words", "never shown", "p50 ms", "p95 ms", "mean ms", "targets met"],
                       [[r["manifest"], names[r["decoder"]], str(r["words"]), str(r["never_shown"]), fmt(r["p50_ms"]),
                         fmt(r["p95_ms"]), fmt(r["mean_ms"]),
                         "-" if r["p50_ms"] is None else
                         "yes" if r["p50_ms"] < TARGET_P50_MS and r["p95_ms"] < TARGET_P95_MS else "no"]
                        for r in report["latency"]]))
    if "wer" in report:
        print(f"\n### WER: the stream's finals vs the bidirectional model's whole-file transcripts "
              f"(target: ratio <= {TARGET_WER_RATIO}x)\n")
        print(markdown(["manifest", "decoder", "utterances", "words", "streaming WER", "bidirectional WER", "ratio"],
                       [[r["manifest"], names[r["decoder"]], str(r["utterances"]), str(r["words"]),
                         fmt(100 * r["streaming_wer"], ".2f", "%"), fmt(100 * r["bidirectional_wer"], ".2f", "%"),
                         fmt(r["ratio"], ".2f", "x")] for r in report["wer"]]))
    if "rtf" in report:
        print("\n### Real-time factor per chunk: feed wall time / chunk duration\n")
        print(markdown(["decoder", "threads", "chunk ms", "feeds", "mean RTF", "p95 RTF", "max feed ms",
                        "feeds > chunk"],
                       [[names[r["decoder"]], str(r["threads"]), f"{r['chunk_ms']:g}", str(r["feeds"]),
                         fmt(r["mean_rtf"], ".3f"), fmt(r["p95_rtf"], ".3f"), fmt(r["max_feed_ms"], ".1f"),
                         str(r["over_chunk"])] for r in report["rtf"]]))
    if "memory" in report:
        m = report["memory"]
        print(f"\n### Memory: one stream of {m['hours']:g} h, fed as fast as it goes ({m['wall_seconds']:.0f} s, "
              f"{m['decoder']}): RSS should stay flat\n")
        print(markdown(["at", "audio s", "events", "RSS MB"],
                       [[r["at"], f"{r['seconds']:g}", str(r["events"]), f"{r['rss_mb']:.1f}"] for r in m["rows"]]))


def main(argv=None) -> None:
    args = parse_args(argv)
    load_start = os.getloadavg()[0]
    try:
        ours = recognizers(args.model, args.threads, args.lm)
        ours["greedy"].stream()  # ConfigError now for a model that cannot stream
        utterances = read_utterances(args.manifests, args.limit)
    except (AsrError, ValueError) as err:
        sys.exit(f"bench_stream: {err}")
    if not utterances:
        sys.exit("bench_stream: no utterances with text in the manifests")
    manifests = list(dict.fromkeys(u.manifest for u in utterances))
    per_manifest = {m: sum(u.manifest == m for u in utterances) for m in manifests}
    report = {"config": {"model": str(ours["greedy"].path), "baseline": None, "chunk_ms": args.chunk_ms,
                         "threads": args.threads, "min_steps": args.min_steps, "tail_ms": args.tail_ms,
                         "sleep": args.sleep, "utterances": len(utterances),
                         "manifests": [str(m) for m in args.manifests], "limit": args.limit,
                         "decoders": {name: decoder_label(r) for name, r in ours.items()},
                         "lm": ours["lm"].decoder_config.lm}}
    streamed = not (args.skip_latency and args.skip_wer and args.skip_rtf)
    if streamed:
        if not (args.skip_latency and args.skip_wer):
            try:
                baseline = recognizers(args.baseline, args.threads, ours["lm"].decoder_config.lm)  # the same LM
            except (AsrError, ValueError) as err:
                sys.exit(f"bench_stream: {err}")
            report["config"]["baseline"] = str(baseline["greedy"].path)
            print(f"bidirectional model over {len(utterances)} utterances...", file=sys.stderr, flush=True)
            run_baseline(baseline, utterances, not args.skip_latency, [] if args.skip_wer else args.decoders)
            del baseline
        chunk = max(1, round(args.chunk_ms / 1000 * SAMPLE_RATE))
        stream(ours["greedy"], utterances[0].wave, chunk, args.min_steps, False)  # warm-up, not counted
        passes = {}
        for decoder in args.decoders:
            print(f"streaming, {decoder_label(ours[decoder])}...", file=sys.stderr, flush=True)
            passes[decoder] = run_pass(ours[decoder], utterances, decoder, args)
        if not args.skip_latency:
            report["latency"] = latency_rows(passes, manifests)
            report["config"]["aligned_utterances"] = sum(u.word_ends is not None for u in utterances)
        if not args.skip_wer:
            report["wer"] = wer_rows(passes, manifests, per_manifest)
        if not args.skip_rtf:
            report["rtf"] = rtf_rows(passes, args.chunk_ms, args.threads)
    if not args.skip_memory:
        print(f"one stream of {args.hours:g} h...", file=sys.stderr, flush=True)
        rows, wall = long_stream(ours["lm"], [u.wave for u in utterances], args.hours, args.chunk_ms, args.min_steps)
        report["memory"] = {"hours": args.hours, "decoder": decoder_label(ours["lm"]), "wall_seconds": wall,
                            "rows": rows}
    report["config"]["load_start"], report["config"]["load_end"] = load_start, os.getloadavg()[0]
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_tables(report)


if __name__ == "__main__":
    try:
        main()
    except ConfigError as err:
        sys.exit(f"bench_stream: {err}")
