"""Streaming recognition: 16 kHz audio in chunks of any size; partial results as they change, final results at
endpoints.

Two layers. LogProbStream runs a streaming model's step (asr.core.streaming, as ONNX or torch) over windows of the
samples received so far: each output step is computed once, as soon as the frames it reads have arrived, with the
LSTMs' state carried between windows, so the log-probabilities of a stream are those of the whole recording.
TranscriptStream turns them into events: a partial (the greedy text of the utterance so far) whenever it
changes, and a final (the Recognizer's decoder, beam search with the LM for the shipped models, with word times)
when the speaker pauses (`EndpointConfig.silence` seconds of blank output after speech), when an utterance reaches
`max_utterance` seconds, and at the end of the stream. Times are seconds from the start of the stream.
"""

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from asr.core.decoding import Word, collapsed, word_timestamps
from asr.core.text import BLANK, WORD_SEPARATOR

UNKNOWN_END = 1 << 40  # total_samples while the stream's end is not known: no position lies past it


@dataclass
class EndpointConfig:
    silence: float = 0.6  # seconds of blank output after speech that end an utterance
    max_utterance: float = 30.0  # seconds: a longer utterance is ended where it has got to
    lead: float = 0.3  # seconds of the silence before an utterance kept with it (for its first word's start)

    def __post_init__(self):
        if not (self.silence > 0 and self.max_utterance > 0 and self.lead >= 0):
            raise ValueError(f"endpointing needs silence > 0, max_utterance > 0 and lead >= 0 seconds, got "
                             f"{self.silence}, {self.max_utterance} and {self.lead}")


@dataclass
class StreamEvent:
    type: str  # "partial" (the utterance so far; may still change) or "final" (the utterance, decoded)
    text: str
    start: float  # seconds from the start of the stream: the utterance's audio
    end: float
    words: list[Word] = field(default_factory=list)  # finals only, times from the start of the stream

    def to_dict(self) -> dict:
        return asdict(self)


class LogProbStream:
    """A streaming network (asr.inference.network.StepNetwork) fed samples a chunk at a time -> the log-probs of
    each output step as soon as it can be computed, and those of the last steps when the stream ends."""

    def __init__(self, network, min_steps: int = 1):
        self.network, self.geometry, self.min_steps = network, network.geometry, min_steps
        self.state = network.initial_state()
        self.samples = np.zeros(0, dtype=np.float32)  # received and still needed, from sample `offset`
        self.offset = self.received = 0
        self.next_step = 0  # the first output step not computed yet (its log-probs come lookahead steps later)
        self.finished = False

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """16 kHz mono samples (S,) float32 -> the log-probs (n, V) of the steps they complete (n may be 0)."""
        if self.finished:
            raise ValueError("this stream has finished: start a new one")
        self.samples = np.concatenate([self.samples, np.asarray(samples, dtype=np.float32)])
        self.received += len(samples)
        g = self.geometry
        frames = (self.received - g.n_fft) // g.hop + 1 if self.received >= g.n_fft else 0
        ready = (frames - 1 - g.right_frames) // g.step_frames + 1 if frames > g.right_frames else 0
        if ready - self.next_step < self.min_steps:
            return self.empty()
        return self.run(ready - self.next_step, UNKNOWN_END, None)

    def finish(self) -> np.ndarray:
        """The log-probs (n, V) of the steps left, now that the stream has ended."""
        if self.finished:
            return self.empty()
        self.finished = True
        steps = self.network.output_length(self.received) - self.next_step + self.geometry.lookahead
        if steps <= 0:
            return self.empty()
        return self.run(steps, self.received, self.network.output_length(self.received))

    def run(self, steps: int, total_samples: int, end: int | None) -> np.ndarray:
        """Compute output steps [next_step, next_step + steps) -> the log-probs of those it completes, before
        `end` (the stream's length in steps, once known)."""
        g = self.geometry
        first_frame = g.step_frames * self.next_step - g.left_frames
        window = self.window(first_frame * g.hop, g.window_samples(steps))
        log_probs, self.state = self.network(window[None], first_frame, total_samples, self.state)  # (n, V)
        start = self.next_step - g.lookahead  # the step of log_probs[0]
        self.next_step += steps
        keep = self.samples[max(0, (g.step_frames * self.next_step - g.left_frames) * g.hop - self.offset):]
        self.offset += len(self.samples) - len(keep)
        self.samples = keep
        return log_probs[max(0, -start):(None if end is None else end - start)]  # none before the stream or past it

    def window(self, start: int, length: int) -> np.ndarray:
        """Samples [start, start + length) of the stream (W,), zeros before it and past what was received."""
        out = np.zeros(length, dtype=np.float32)
        low, high = max(start, self.offset), min(start + length, self.received)
        if high > low:
            out[low - start:high - start] = self.samples[low - self.offset:high - self.offset]
        return out

    def empty(self) -> np.ndarray:
        return np.zeros((0, len(self.network.tokenizer)), dtype=np.float32)


class TranscriptStream:
    """Audio in chunks -> StreamEvents: partials as the text of the utterance under way changes, finals at
    endpoints. Made by Recognizer.stream()."""

    def __init__(self, recognizer, endpoint: EndpointConfig | None = None, min_steps: int = 1):
        self.recognizer, self.endpoint = recognizer, endpoint or EndpointConfig()
        self.log_probs = LogProbStream(recognizer.network.streaming(), min_steps)
        self.tokenizer = recognizer.tokenizer
        self.step_seconds = recognizer.network.cfg.output_step_seconds
        self.pause_tokens = [BLANK] + ([self.tokenizer.vocab.index(WORD_SEPARATOR)]
                                       if WORD_SEPARATOR in self.tokenizer.vocab else [])
        self.silence_steps, self.lead_steps = self.steps(self.endpoint.silence), self.steps(self.endpoint.lead)
        self.max_steps = max(self.steps(self.endpoint.max_utterance), 1)
        self.utterance = np.zeros((0, len(self.tokenizer)), dtype=np.float32)  # (T, V) log-probs since `start`
        self.best = np.zeros(0, dtype=np.int64)  # (T,) their best token at each step
        self.start = 0  # the output step of utterance[0]
        self.partial = ""

    def steps(self, seconds: float) -> int:
        """Output steps that cover `seconds`."""
        return math.ceil(seconds / self.step_seconds - 1e-9)

    def feed(self, samples: np.ndarray) -> list[StreamEvent]:
        """16 kHz mono samples (S,) float32 -> the events they bring (often none)."""
        return self.events(self.log_probs.feed(samples), ended=False)

    def finish(self) -> list[StreamEvent]:
        """The events of the end of the stream: the last utterance's final, if it holds any speech."""
        return self.events(self.log_probs.finish(), ended=True)

    def events(self, new: np.ndarray, ended: bool) -> list[StreamEvent]:
        """The events of new log-probs (n, V): a final for each utterance they end (however many steps they
        hold), then the partial of the one under way if its text changed, or its final if the stream `ended`."""
        self.utterance = np.concatenate([self.utterance, new])
        self.best = np.concatenate([self.best, new.argmax(-1)])
        events = []
        while (end := self.utterance_end()) is not None:
            events.append(self.final(end))
        if not np.isin(self.best, self.pause_tokens, invert=True).any():  # silence: keep its last `lead` seconds
            self.drop(len(self.best) - self.lead_steps)
            return events
        if ended:
            return events + [self.final(len(self.best))]
        text = self.tokenizer.decode(collapsed(self.best))
        if text != self.partial:
            self.partial = text
            events.append(StreamEvent("partial", text, *self.span(len(self.best))))
        return events

    def utterance_end(self) -> int | None:
        """The steps of the utterance under way up to its end, if it has ended: `silence` seconds of pause after
        speech, or `max_utterance` seconds; else None."""
        spoken = np.flatnonzero(np.isin(self.best, self.pause_tokens, invert=True))  # steps that emit a token
        if not len(spoken):
            return None
        pauses = np.diff(np.append(spoken, len(self.best))) - 1  # pause steps after each spoken one (the last: so far)
        ended = np.flatnonzero(pauses >= self.silence_steps)
        if len(ended):
            return int(spoken[ended[0]]) + self.silence_steps + 1
        return self.max_steps if len(self.best) >= self.max_steps else None

    def final(self, steps: int) -> StreamEvent:
        """The utterance under way, its first `steps` steps decoded whole; the next one starts after them."""
        log_probs = self.utterance[:steps]  # (T, V)
        ids = self.recognizer.decode(log_probs[None], np.array([steps]))[0] if steps else []
        offset = self.start * self.step_seconds
        words = [Word(w.word, round(offset + w.start, 3), round(offset + w.end, 3), w.confidence)
                 for w in word_timestamps(log_probs, ids, self.tokenizer, self.step_seconds)]
        event = StreamEvent("final", self.tokenizer.decode(ids), *self.span(steps), words)
        self.drop(steps)
        self.partial = ""
        return event

    def span(self, steps: int) -> tuple[float, float]:
        """(start, end) seconds of the utterance's first `steps` steps."""
        return round(self.start * self.step_seconds, 3), round((self.start + steps) * self.step_seconds, 3)

    def drop(self, steps: int) -> None:
        """Forget the utterance's first `steps` steps (silence, or a finished utterance)."""
        steps = max(steps, 0)
        self.utterance, self.best, self.start = self.utterance[steps:], self.best[steps:], self.start + steps

