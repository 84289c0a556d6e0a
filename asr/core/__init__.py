"""The core: audio, text, manifests, features, the network, model bundles, decoding, language models and
metrics. Everything a program needs to read data and run a model; none of it imports Lightning."""
