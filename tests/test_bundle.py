import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from asr.core.bundle import BundleError, load_bundle, save_bundle
from asr.core.model import DeepSpeech2
from asr.core.text import CharTokenizer
from asr.training.config import load_experiment_config


@pytest.fixture
def model():
    torch.manual_seed(0)
    return DeepSpeech2(load_experiment_config("tiny").model).eval()


def outputs(model, waves, lengths):
    with torch.no_grad():
        return model(waves, lengths)[0]


def test_save_and_load_give_identical_outputs(tmp_path, model):
    path = save_bundle(tmp_path / "m.safetensors", model, CharTokenizer())
    loaded, tokenizer = load_bundle(path)
    waves, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    assert torch.equal(outputs(model, waves, lengths), outputs(loaded, waves, lengths))
    assert tokenizer.vocab == CharTokenizer().vocab
    assert not loaded.training


def test_a_bundle_is_readable_by_others_as_the_umask_allows(tmp_path, model):
    path = save_bundle(tmp_path / "m.safetensors", model, CharTokenizer())
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_saving_a_model_twice_gives_the_same_bytes(tmp_path, model):
    # safetensors orders the metadata differently on every save; save_bundle sorts it
    files = [save_bundle(tmp_path / f"{i}.safetensors", model, CharTokenizer()).read_bytes() for i in range(6)]
    assert all(data == files[0] for data in files)
    size = int.from_bytes(files[0][:8], "little")
    assert size % 8 == 0
    assert list(json.loads(files[0][8:8 + size])["__metadata__"]) == ["format", "model_config", "tokenizer", "version"]


def test_half_precision_bundle_is_smaller_and_close(tmp_path, model):
    full = save_bundle(tmp_path / "f32.safetensors", model, CharTokenizer())
    half = save_bundle(tmp_path / "f16.safetensors", model, CharTokenizer(), torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    waves, lengths = torch.randn(1, 8000), torch.tensor([8000])
    torch.testing.assert_close(outputs(load_bundle(half)[0], waves, lengths), outputs(model, waves, lengths),
                               atol=2e-2, rtol=0)


def test_a_pickle_posing_as_a_model_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(path)
    assert not marker.exists()


def test_weights_that_disagree_with_the_config_are_refused(tmp_path, model):
    path = save_bundle(tmp_path / "m.safetensors", model, CharTokenizer())
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["head.weight"] = tensors["head.weight"][:, :10].contiguous()
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(BundleError, match="do not match the model config"):
        load_bundle(path)


def test_missing_and_foreign_files_are_named(tmp_path):
    with pytest.raises(BundleError, match="no such model file"):
        load_bundle(tmp_path / "nope.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(BundleError, match="not an asr model bundle"):
        load_bundle(tmp_path / "other.safetensors")
