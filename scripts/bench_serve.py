"""Throughput and latency of `asr serve` with dynamic batching against the same requests served one at a
time (no batching), in one run; and a soak: a few minutes of good and bad uploads, memory watched.

    python scripts/bench_serve.py                                 # 1, 4 and 16 clients (a few minutes)
    python scripts/bench_serve.py --clients 1 4 --requests 8 --rounds 1   # a quick check
    python scripts/bench_serve.py --soak 3                        # 3 minutes at 4 clients, 1 upload in 4 bad

The utterances are espeak-ng reading 1 to 6 sentences at once: 2-15 s each, sent as the 22.05 kHz WAV
espeak-ng writes. Each server is `asr serve --port 0` in its own process, with the same model and decoder:
"batched" (--max-batch 16 --max-wait-ms W) and "one at a time" (--max-batch 1: every request is decoded
alone, in order; uploads are still read concurrently), both running throughout and taking turns, round
after round, so that other load on the machine falls on both alike. In a round every client (a thread
with its own HTTP connection, httpx) sends its share of the requests one after another; a request's latency
runs from sending the upload to receiving the whole answer. Requests per second and audio seconds per
second are over the wall time of all the requests; "p95 ~10 s" is the 95th percentile latency of the
requests whose audio is 8-12 s long. The texts of both servers are checked against each other.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
from bench_transcribe import SENTENCES  # scripts/ is the script's own folder: first on sys.path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120  # seconds for a server to answer /health once it has printed its URL
BAD_UPLOADS = [("empty.wav", b""), ("noise.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8),
               ("notes.txt", b"not audio\n")]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=48, help="requests in a round (default: 48)")
    p.add_argument("--rounds", type=int, default=2, help="rounds at each number of clients (default: 2)")
    p.add_argument("--utterances", type=int, default=24, help="distinct utterances, sent in turn (default: 24)")
    p.add_argument("--max-wait-ms", type=float, default=20.0, help="the batched server's (default: 20)")
    p.add_argument("--threads", type=int, default=1, help="the servers' torch threads (OMP_NUM_THREADS; default: 1)")
    p.add_argument("--soak", type=float, metavar="MINUTES", help="instead: a soak of MINUTES at --soak-clients")
    p.add_argument("--soak-clients", type=int, default=4)
    p.add_argument("server_options", nargs="*", help="more `asr serve` options after --, e.g. -- --decoder greedy")
    return p.parse_args()


def utterances(folder: Path, count: int) -> list[tuple[str, bytes, float]]:
    """(name, WAV bytes, seconds) of `count` espeak-ng utterances of 1 to 6 sentences each (2-15 s)."""
    if not shutil.which("espeak-ng"):
        sys.exit("bench_serve: espeak-ng is not installed (scripts/install.sh)")
    found = []
    for i in range(count):
        text = ", ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 6))
        path = folder / f"utterance-{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
        found.append((path.name, path.read_bytes(), sf.info(str(path)).duration))
    return found


class Server:
    """`asr serve --port 0 OPTIONS` in a subprocess, until closed."""

    def __init__(self, options: list[str], threads: int):
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, "-m", "asr", "serve", "--port", "0", *options], cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            self.fail("did not start")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                httpx.get(f"{self.url}/health").raise_for_status()
                break
            except httpx.TransportError:
                time.sleep(0.1)
            if self.process.poll() is not None:
                self.fail(f"exited ({self.process.returncode}) before its /health answered")
            if time.monotonic() > deadline:
                self.fail(f"did not answer /health within {START_TIMEOUT} s")

    def fail(self, what: str) -> None:
        """Kill the server if it still runs, and exit with what went wrong and the tail of its log."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=120)
        self.log.seek(0)
        sys.exit(f"bench_serve: asr serve {what}:\n{self.log.read().decode()[-3000:]}")

    def transcribe(self, client: httpx.Client, name: str, data: bytes) -> httpx.Response:
        return client.post(f"{self.url}/v1/audio/transcriptions", files={"file": (name, data)}, timeout=300)

    def metrics(self) -> dict:
        return httpx.get(f"{self.url}/metrics", timeout=60).json()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)


def load(server: Server, clients: int, requests: list[tuple[str, bytes, float]]) -> dict:
    """Send `requests` from `clients` threads; the wall time, and each request's latency, seconds and text."""
    shares = [requests[i::clients] for i in range(clients)]

    def client(share):
        done = []
        with httpx.Client() as http:
            for name, data, seconds in share:
                start = time.perf_counter()
                answer = server.transcribe(http, name, data)
                answer.raise_for_status()
                done.append((time.perf_counter() - start, seconds, name, answer.json()["text"]))
        return done

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for share in pool.map(client, shares) for r in share]
    return {"wall": time.perf_counter() - start, "results": results}


def summary(run: dict) -> dict:
    latencies = np.array([r[0] for r in run["results"]])
    ten = np.array([r[0] for r in run["results"] if 8 <= r[1] <= 12])
    audio = sum(r[1] for r in run["results"])
    return {"rps": len(latencies) / run["wall"], "audio/s": audio / run["wall"],
            "p50": np.percentile(latencies, 50), "p95": np.percentile(latencies, 95),
            "p95 ~10 s": np.percentile(ten, 95) if len(ten) else float("nan")}


def bench(args, speech) -> None:
    requests = [speech[i % len(speech)] for i in range(args.requests)]
    modes = {"batched": ["--max-batch", "16", "--max-wait-ms", str(args.max_wait_ms)],
             "one at a time": ["--max-batch", "1"]}
    servers = {mode: Server(options + args.server_options, args.threads) for mode, options in modes.items()}
    runs, texts = {}, {mode: {} for mode in modes}
    try:
        for server in servers.values():
            load(server, 1, speech[:2])  # warm up
        for clients in args.clients:
            for _ in range(args.rounds):  # the two take turns, so that the machine's other load hits both alike
                for mode, server in servers.items():
                    run = load(server, clients, requests)
                    done = runs.setdefault((mode, clients), {"wall": 0.0, "results": []})
                    done["wall"] += run["wall"]
                    done["results"] += run["results"]
                    texts[mode].update({name: text for _, _, name, text in run["results"]})
        for mode, server in servers.items():
            m = server.metrics()
            print(f"{mode}: {m['batches']} batches, mean {m['batched_chunks'] / m['batches']:.1f} chunks, largest "
                  f"{m['largest_batch']}", file=sys.stderr)
    finally:
        for server in servers.values():
            server.close()
    print(f"{'serving':<14} {'clients':>7} {'requests':>8} {'req/s':>7} {'audio s/s':>9} {'p50 s':>6} {'p95 s':>6} "
          f"{'p95 ~10 s':>9}")
    print("-" * 74)
    for (mode, clients), run in runs.items():
        s = summary(run)
        print(f"{mode:<14} {clients:>7} {len(run['results']):>8} {s['rps']:>7.2f} {s['audio/s']:>9.1f} "
              f"{s['p50']:>6.2f} {s['p95']:>6.2f} {s['p95 ~10 s']:>9.2f}")
    for clients in args.clients:
        batched, alone = (summary(runs[mode, clients])["audio/s"] for mode in modes)
        print(f"{clients} clients: batched serves {batched / alone:.2f}x the audio per second of one at a time")
    differ = sum(texts["batched"][name] != texts["one at a time"][name] for name in texts["batched"])
    print(f"transcripts that differ between the two servers: {differ} of {len(texts['batched'])}")
    print(f"audio: {len(speech)} utterances, {min(s for *_, s in speech):.1f}-{max(s for *_, s in speech):.1f} s; "
          f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def soak(args, speech) -> None:
    """--soak MINUTES: good and bad uploads from several clients; every good one must come back 200 with the
    text it had at first, every bad one with a 4xx; the server's RSS is sampled from /metrics."""
    server = Server(["--max-wait-ms", str(args.max_wait_ms)] + args.server_options, args.threads)
    try:
        reference = {name: text for _, _, name, text in load(server, 1, speech)["results"]}
        stop, counts, rss = time.monotonic() + 60 * args.soak, {"good": 0, "bad": 0, "wrong": []}, []
        lock = threading.Lock()

        def client(seed):
            with httpx.Client() as http:
                for i in range(1 << 30):  # every client sends a bad upload, then three good ones, and again
                    if time.monotonic() > stop:
                        return
                    if i % 4 == 0:
                        answer = server.transcribe(http, *BAD_UPLOADS[(seed + i // 4) % len(BAD_UPLOADS)])
                        ok, kind = 400 <= answer.status_code < 500, "bad"
                    else:
                        name, data, _ = speech[(seed * 7 + i) % len(speech)]
                        answer = server.transcribe(http, name, data)
                        ok, kind = answer.status_code == 200 and answer.json()["text"] == reference[name], "good"
                    with lock:
                        counts[kind] += 1
                        if not ok:
                            counts["wrong"].append((kind, answer.status_code, answer.text[:200]))

        def sample():
            while time.monotonic() < stop:
                rss.append(server.metrics()["rss_mb"])
                time.sleep(10)

        with ThreadPoolExecutor(args.soak_clients + 1) as pool:
            jobs = [pool.submit(client, seed) for seed in range(args.soak_clients)] + [pool.submit(sample)]
            for job in jobs:
                job.result()
        final = server.metrics()
    finally:
        server.close()
    print(f"soak: {args.soak:g} min, {args.soak_clients} clients: {counts['good']} good uploads, {counts['bad']} bad; "
          f"{len(counts['wrong'])} answered wrongly {counts['wrong'][:3]}")
    print(f"server RSS MB every 10 s: {' '.join(f'{r:.0f}' for r in rss)}; at the end {final['rss_mb']:.0f}")
    print(f"server metrics at the end: {final}")
    print(f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        speech = utterances(Path(tmp), args.utterances)
    (soak if args.soak else bench)(args, speech)


if __name__ == "__main__":
    main()
