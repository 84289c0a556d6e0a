"""Corpora the CLI can fetch or make: LibriSpeech download and preparation, synthetic TTS corpora."""
