"""asr: a DeepSpeech2-style speech recognizer (CNN + bidirectional LSTM + CTC)."""

from importlib import import_module

__all__ = ["DecoderConfig", "EndpointConfig", "load_audio", "load_model"]
HOMES = {"DecoderConfig": ".core.decoding", "EndpointConfig": ".inference.streaming", "load_audio": ".core.audio",
         "load_model": ".inference.transcribe"}


def __getattr__(name: str):
    """The public names, imported on first use (PEP 562), so that `import asr.core.manifest` loads no torch."""
    if name not in HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(HOMES[name], __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
