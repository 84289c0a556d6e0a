"""Inference on top of the core: transcription (one log-prob path for files, chunks and batches), output
writers, `--plot`, scoring manifests, LM weight tuning, export, quantization and the HTTP service."""
