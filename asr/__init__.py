"""asr: a DeepSpeech2-style speech recognizer."""
