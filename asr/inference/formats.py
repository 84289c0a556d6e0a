"""The names of what asr can write, for the command line's choices. Torch-free, so that building the
parser (`asr --help`, a mistyped option) does not wait seconds for torch to load."""

TRANSCRIPT_FORMATS = ("text", "json", "srt", "vtt", "tsv")  # asr transcribe --format: asr.inference.writers
EXPORT_FORMATS = ("bundle", "onnx", "torchscript")  # asr export --format: asr.inference.export
QUANTIZE = ("int8",)  # int8 dynamic quantization of LSTM and linear weights: asr.inference.quantize
