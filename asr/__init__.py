"""asr: a DeepSpeech2-style speech recognizer (CNN + bidirectional LSTM + CTC)."""

from .decoding import DecoderConfig
from .transcribe import load_model

__all__ = ["DecoderConfig", "load_model"]
