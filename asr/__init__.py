"""asr: a DeepSpeech2-style speech recognizer (CNN + bidirectional LSTM + CTC)."""

from .transcribe import load_model

__all__ = ["load_model"]
