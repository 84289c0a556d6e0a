import json
import logging
import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from asr.core.audio import SAMPLE_RATE, AudioError, write_audio
from asr.core.augment import AugmentConfig, Augmenter
from asr.core.manifest import ManifestError, Utterance, read_manifest, write_manifest
from asr.core.text import CharTokenizer, normalize
from asr.corpora.librispeech import prepare_librispeech
from asr.training.config import DataConfig
from asr.training.datamodule import SpeechDataModule
from asr.training.dataset import Batch, SpeechDataset, collate
from asr.training.sampler import Draw, DurationBatchSampler

torch.set_num_threads(1)


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def flatten(batches):
    return [i for b in batches for i in b]


# ---------------------------------------------------------------------------------------------- manifests


def test_manifest_round_trip_with_relative_paths(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    manifest = folder / "train.jsonl"
    manifest.write_text(
        '{"audio_filepath": "wav/a.flac", "duration": 1.5, "text": "HELLO WORLD", "speaker": 7}\n'
        "\n"
        f'{{"audio_filepath": "{tmp_path / "elsewhere" / "b.wav"}", "duration": 2, "text": "CAFÉ"}}\n',
        encoding="utf-8",
    )
    utts = read_manifest(manifest)
    assert utts == [
        Utterance(folder / "wav" / "a.flac", 1.5, "HELLO WORLD", {"speaker": 7}),
        Utterance(tmp_path / "elsewhere" / "b.wav", 2.0, "CAFÉ"),
    ]
    assert all(u.audio_filepath.is_absolute() for u in utts)

    copy = folder / "copy.jsonl"  # same folder: the path under it stays relative
    write_manifest(copy, utts)
    rows = [json.loads(line) for line in copy.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"audio_filepath": "wav/a.flac", "duration": 1.5, "text": "HELLO WORLD", "speaker": 7}
    assert rows[1]["audio_filepath"] == str(tmp_path / "elsewhere" / "b.wav")
    assert read_manifest(copy) == utts

    moved = tmp_path / "other" / "moved.jsonl"  # audio not under its folder: absolute paths
    write_manifest(moved, utts)
    assert json.loads(moved.read_text().splitlines()[0])["audio_filepath"] == str(folder / "wav" / "a.flac")
    assert read_manifest(moved) == utts


def test_manifest_reads_relative_to_its_folder_not_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.jsonl").write_text('{"audio_filepath": "a.wav", "duration": 1, "text": "A"}\n')
    monkeypatch.chdir(tmp_path)
    assert read_manifest("m/x.jsonl")[0].audio_filepath == tmp_path / "m" / "a.wav"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"audio_filepath": "a.wav", "duration": 1.0', "not valid JSON"),
        ('{"audio_filepath": "a.wav", "text": "HI"}', "missing key 'duration'"),
        ('{"duration": 1.0, "text": "HI"}', "missing key 'audio_filepath'"),
        ('{"audio_filepath": "a.wav", "duration": "1.0", "text": "HI"}', "'duration' must be a number"),
        ('{"audio_filepath": "a.wav", "duration": true, "text": "HI"}', "'duration' must be a number"),
        ('{"audio_filepath": "a.wav", "duration": -1, "text": "HI"}', "non-negative"),
        ('{"audio_filepath": "a.wav", "duration": 1.0, "text": null}', "'text' must be a string"),
        ('{"audio_filepath": 3, "duration": 1.0, "text": "HI"}', "'audio_filepath' must be a string"),
        ('["a.wav", 1.0, "HI"]', "expected a JSON object"),
    ],
)
def test_malformed_manifest_line_names_file_and_line(tmp_path, line, message):
    good = '{"audio_filepath": "a.wav", "duration": 1.0, "text": "HI"}'
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join([good, "", good, line, good]) + "\n")
    with pytest.raises(ManifestError, match="manifest.jsonl line 4: ") as err:
        read_manifest(manifest)
    assert message in str(err.value)


def test_missing_manifest_is_a_manifest_error(tmp_path):
    with pytest.raises(ManifestError, match="nope.jsonl: no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------------------------------------- LibriSpeech


def make_librispeech(subset_dir, spec):
    """spec: {(speaker, chapter): [(seconds or None for a missing flac, transcript), ...]}"""
    for (speaker, chapter), utts in spec.items():
        folder = subset_dir / str(speaker) / str(chapter)
        folder.mkdir(parents=True)
        lines = []
        for n, (seconds, text) in enumerate(utts):
            utt_id = f"{speaker}-{chapter}-{n:04d}"
            lines.append(f"{utt_id} {text}")
            if seconds is not None:
                sf.write(folder / f"{utt_id}.flac", tone(seconds, 200 + 50 * n), SAMPLE_RATE)
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")


def test_prepare_librispeech_single_subset(tmp_path, caplog):
    subset = tmp_path / "LibriSpeech" / "dev-clean"
    make_librispeech(
        subset,
        {
            (84, 121123): [(0.5, "go, do you hear"), (0.25, "BUT IN LESS THAN FIVE MINUTES")],
            (84, 121550): [(None, "MISSING AUDIO HERE")],
            (174, 50561): [(0.75, "It's 2 o'clock")],
        },
    )
    with caplog.at_level(logging.WARNING, logger="asr.corpora.librispeech"):
        manifests = prepare_librispeech(subset, tmp_path / "manifests")
    assert manifests == {"dev-clean": tmp_path / "manifests" / "dev-clean.jsonl"}
    assert "84-121550-0000.flac" in caplog.text and "84-121550.trans.txt line 1" in caplog.text

    rows = [json.loads(line) for line in manifests["dev-clean"].read_text().splitlines()]
    assert all(set(r) == {"audio_filepath", "duration", "text"} for r in rows)
    assert [os.path.basename(r["audio_filepath"]) for r in rows] == [
        "174-50561-0000.flac", "84-121123-0000.flac", "84-121123-0001.flac",
    ]  # fmt: skip
    assert [r["duration"] for r in rows] == [0.75, 0.5, 0.25]
    assert [r["text"] for r in rows] == ["IT'S TWO O'CLOCK", "GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"]
    utts = read_manifest(manifests["dev-clean"])
    assert all(u.audio_filepath.is_file() for u in utts)


def test_prepare_librispeech_several_subsets_is_deterministic(tmp_path):
    root = tmp_path / "LibriSpeech"
    make_librispeech(root / "train-clean-100", {(19, 198): [(0.5, "A"), (0.3, "B")], (26, 495): [(0.4, "C")]})
    make_librispeech(root / "dev-clean", {(84, 121123): [(0.2, "D")]})
    manifests = prepare_librispeech(root, tmp_path / "out")
    assert list(manifests) == ["dev-clean", "train-clean-100"]
    assert [u.text for u in read_manifest(manifests["train-clean-100"])] == ["A", "B", "C"]
    assert [u.text for u in read_manifest(manifests["dev-clean"])] == ["D"]
    first = manifests["train-clean-100"].read_text()
    prepare_librispeech(root, tmp_path / "out")
    assert manifests["train-clean-100"].read_text() == first


def test_prepare_librispeech_without_transcripts_says_what_to_do(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.trans.txt transcripts found; point ROOT"):
        prepare_librispeech(tmp_path / "empty", tmp_path / "out")


# ---------------------------------------------------------------------------------------------- sampler


def random_durations(n=300, seed=0, long=()):
    rng = random.Random(seed)
    return [round(rng.uniform(0.5, 15.0), 2) for _ in range(n)] + list(long)


def epoch(sampler, e):
    """The utterance indices of epoch e's batches."""
    sampler.set_epoch(e)
    return [[draw.index for draw in batch] for batch in sampler]


def test_sampler_respects_caps_and_covers_every_utterance_once():
    durations = random_durations(long=[45.0, 31.0])
    cap, size = 30.0, 12
    sampler = DurationBatchSampler(durations, cap, max_batch_size=size)
    for e in range(3):
        batches = epoch(sampler, e)
        assert len(batches) == len(sampler)
        assert sorted(flatten(batches)) == list(range(len(durations)))
        for b in batches:
            assert len(b) <= size
            assert len(b) * max(durations[i] for i in b) <= cap or len(b) == 1
    assert [45.0] in [[durations[i] for i in b] for b in batches]  # the overlong one alone


def test_sampler_groups_similar_durations():
    durations = random_durations(n=1000)
    batches = epoch(DurationBatchSampler(durations, 60.0), 1)
    padding = sum(len(b) * max(durations[i] for i in b) for b in batches) - sum(durations)
    assert padding < 0.05 * sum(durations)


def test_sampler_is_deterministic_for_a_seed_and_varies_across_epochs_and_seeds():
    durations = random_durations()
    a, b = DurationBatchSampler(durations, 30.0, seed=1), DurationBatchSampler(durations, 30.0, seed=1)
    assert epoch(a, 1) == epoch(b, 1)
    assert epoch(a, 1) == epoch(a, 1)  # iterating again gives the same epoch
    assert epoch(a, 1) != epoch(a, 2)
    assert epoch(a, 1) != epoch(DurationBatchSampler(durations, 30.0, seed=2), 1)
    assert len({len(epoch(a, e)) for e in range(5)}) == 1  # same batch count every epoch


def test_sampler_varies_batch_composition_across_epochs():
    durations = [1.0 + 0.001 * (i % 40) for i in range(200)]  # all within one grid cell or two
    sampler = DurationBatchSampler(durations, 10.0)
    sets = lambda batches: {frozenset(b) for b in batches}  # noqa: E731
    assert sets(epoch(sampler, 1)) != sets(epoch(sampler, 2))


def test_sorta_grad_first_epoch_is_shortest_first_and_later_epochs_are_shuffled():
    durations = random_durations()
    sampler = DurationBatchSampler(durations, 30.0, sorta_grad=True)
    first = [durations[i] for i in flatten(epoch(sampler, 0))]
    assert first == sorted(durations)
    later = [durations[i] for i in flatten(epoch(sampler, 1))]
    assert later != sorted(later)
    no_sorta = [durations[i] for i in flatten(epoch(DurationBatchSampler(durations, 30.0), 0))]
    assert no_sorta != sorted(no_sorta)


def test_unshuffled_sampler_is_sorted_and_the_same_every_epoch():
    durations = random_durations()
    sampler = DurationBatchSampler(durations, 30.0, shuffle=False)
    assert [durations[i] for i in flatten(epoch(sampler, 0))] == sorted(durations)
    assert epoch(sampler, 0) == epoch(sampler, 5)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("shuffle", [True, False])
def test_sampler_shards_across_ranks_without_dropping_or_repeating(world, shuffle):
    durations = random_durations(n=310, long=[40.0])  # 97 batches unsharded
    cap = 30.0
    assert len(DurationBatchSampler(durations, cap)) % world != 0  # the count must be made divisible
    for e in range(3):
        shards = [
            epoch(DurationBatchSampler(durations, cap, shuffle=shuffle, sorta_grad=True, num_replicas=world, rank=r), e)
            for r in range(world)
        ]
        assert len({len(s) for s in shards}) == 1
        every = [i for s in shards for i in flatten(s)]
        assert sorted(every) == list(range(len(durations)))  # disjoint and complete
        for s in shards:
            assert all(len(b) * max(durations[i] for i in b) <= cap or len(b) == 1 for b in s)
    assert len(DurationBatchSampler(durations, cap, num_replicas=world, rank=0)) == len(shards[0])


def test_sampler_refuses_fewer_utterances_than_ranks():
    with pytest.raises(ValueError, match="2 utterances cannot be shared among 4 ranks"):
        DurationBatchSampler([1.0, 2.0], 30.0, num_replicas=4, rank=0)
    with pytest.raises(ValueError, match="shared equally among 2 ranks"):  # every batch already a singleton
        list(DurationBatchSampler([5.0, 6.0, 7.0], 4.0, num_replicas=2, rank=0))


def test_sampler_state_dict_resumes_after_the_yielded_batches():
    durations = random_durations()
    sampler = DurationBatchSampler(durations, 30.0, seed=3, num_replicas=2, rank=1)
    sampler.set_epoch(4)
    full = list(sampler)
    it = iter(sampler)
    seen = [next(it) for _ in range(5)]
    state = sampler.state_dict()
    assert state == {"epoch": 4, "batches_done": 5}

    resumed = DurationBatchSampler(durations, 30.0, seed=3, num_replicas=2, rank=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(4)  # Lightning sets the epoch again before iterating
    assert len(resumed) == len(full)
    assert seen + list(resumed) == full
    assert list(resumed) == full  # the next pass over the epoch starts from its beginning
    resumed.load_state_dict(state)
    resumed.set_epoch(5)  # a new epoch forgets the skip
    fresh = DurationBatchSampler(durations, 30.0, seed=3, num_replicas=2, rank=1)
    fresh.set_epoch(5)
    assert list(resumed) == list(fresh)  # the same draws, augmentation seeds included


def test_an_abandoned_pass_does_not_shorten_the_next():
    """Lightning's sanity check takes 2 validation batches and drops the iterator: validation must still see all."""
    sampler = DurationBatchSampler(random_durations(), 30.0, shuffle=False)
    full = list(sampler)
    it = iter(sampler)
    next(it), next(it)
    assert list(sampler) == full


def test_lightning_sets_the_sampler_epoch_through_the_dataloader():
    sampler = DurationBatchSampler(random_durations(n=20), 30.0)
    loader = DataLoader(list(range(20)), batch_sampler=sampler)
    _set_sampler_epoch(loader, 3)  # what Lightning's fit and validation loops call every epoch
    assert sampler.epoch == 3


# ---------------------------------------------------------------------------------------------- batches


def make_corpus(folder, specs):
    """specs: [(seconds, text)] -> utterances with audio written under `folder`"""
    folder.mkdir(parents=True, exist_ok=True)
    utts = []
    for n, (seconds, text) in enumerate(specs):
        path = folder / f"u{n}.wav"
        write_audio(path, torch.from_numpy(tone(seconds, 300 + 40 * n)))
        utts.append(Utterance(path, seconds, text))
    return utts


def test_collate_pads_and_reports_lengths():
    items = [
        (torch.ones(5), torch.tensor([3, 4]), 7),
        (torch.full((3,), 2.0), torch.tensor([5, 6, 7, 8]), 2),
    ]
    batch = collate(items)
    assert isinstance(batch, Batch)
    assert batch.waves.shape == (2, 5) and batch.waves.dtype == torch.float32
    assert batch.waves[1].tolist() == [2.0, 2.0, 2.0, 0.0, 0.0]
    assert batch.wave_lengths.tolist() == [5, 3]
    assert batch.targets.tolist() == [[3, 4, 0, 0], [5, 6, 7, 8]]
    assert batch.target_lengths.tolist() == [2, 4]
    assert batch.indices.tolist() == [7, 2]
    assert all(t.dtype == torch.long for t in batch[1:])


def test_an_undecodable_file_in_training_is_reported_and_the_next_utterance_takes_its_place(tmp_path, caplog):
    utts = make_corpus(tmp_path / "wav", [(0.3, "one"), (0.3, "two"), (0.3, "three")])
    utts[1].audio_filepath.write_text("not audio, though its header was read when the manifest was")
    dataset = SpeechDataset(utts, CharTokenizer())
    with caplog.at_level(logging.WARNING, logger="asr.training.dataset"):
        wave, target, i = dataset[1]
    assert i == 2 and CharTokenizer().decode(target.tolist()) == "THREE"
    assert str(utts[1].audio_filepath) in caplog.text and "not a readable audio file" in caplog.text
    for u in utts:
        u.audio_filepath.write_text("broken")
    with pytest.raises(AudioError, match="check-manifest --decode"):
        dataset[0]


def test_an_undecodable_babble_talker_is_reported_and_left_silent(tmp_path, caplog):
    utts = make_corpus(tmp_path / "wav", [(0.3, "one")])
    utts[0].audio_filepath.write_text("not audio, though its header was read when the manifest was")
    with caplog.at_level(logging.WARNING, logger="asr.training.dataset"):
        wave = SpeechDataset(utts, CharTokenizer()).other(torch.Generator().manual_seed(0))
    assert wave.shape == (0,)
    assert str(utts[0].audio_filepath) in caplog.text and "not a readable audio file" in caplog.text


def test_a_file_longer_than_its_manifest_row_when_read_is_skipped_and_the_batch_keeps_its_planned_size(tmp_path,
                                                                                                    caplog):
    utts = make_corpus(tmp_path / "wav", [(0.3, "one"), (0.3, "two")])
    write_audio(utts[0].audio_filepath, torch.from_numpy(tone(20.0)))  # replaced after setup read its header
    dataset = SpeechDataset(utts, CharTokenizer())
    with caplog.at_level(logging.WARNING, logger="asr.training.dataset"):
        wave, target, i = dataset[0]
        babble = dataset.other(torch.Generator().manual_seed(3))  # draws utterance 0
    assert i == 1 and len(wave) == 0.3 * SAMPLE_RATE and babble.shape == (0,)
    assert f"skipped in training: {utts[0].audio_filepath}: lasts 20.000 s but its manifest row says 'duration': " \
           "0.3 (fix the row)" in caplog.text


def test_setup_reads_each_header_and_drops_audio_whose_length_is_not_its_rows(tmp_path, caplog):
    from asr.training.config import load_experiment_config

    utts = make_corpus(tmp_path / "wav", [(0.5, "one"), (0.5, "two"), (0.5, "three"), (0.5, "four")])
    write_audio(utts[1].audio_filepath, torch.from_numpy(tone(60.0)))  # an hour would do the same, more slowly
    write_audio(utts[2].audio_filepath, torch.from_numpy(tone(0.2)))
    write_audio(utts[3].audio_filepath, torch.from_numpy(tone(0.58)))  # within 0.1 s, as check-manifest allows
    write_manifest(tmp_path / "train.jsonl", utts)
    tiny = load_experiment_config("tiny", [f"data.train_manifests=[{tmp_path / 'train.jsonl'}]",
                                           f"data.val_manifests=[{tmp_path / 'train.jsonl'}]"])
    dm = SpeechDataModule(tiny.data, CharTokenizer(), tiny.model)
    with caplog.at_level(logging.WARNING, logger="asr.training.datamodule"):
        dm.setup("fit")
    assert [u.text for u in dm.train_set] == [u.text for u in dm.val_set] == ["one", "four"]
    assert (f"train.jsonl: dropped 2 of 4 utterances that cannot be trained on (first: {utts[1].audio_filepath}: "
            "lasts 60.000 s but its manifest row says 'duration': 0.5 (fix the row))") in caplog.text


def test_dataloader_with_sampler_yields_padded_batches(tmp_path):
    specs = [(0.3, "hello world"), (0.5, "It's 2"), (0.2, "ok"), (0.45, "a b c"), (0.35, "yes")]
    utts = make_corpus(tmp_path / "wav", specs)
    tokenizer = CharTokenizer()
    dataset = SpeechDataset(utts, tokenizer)
    wave, target, i = dataset[1]
    assert wave.shape == (8000,) and wave.dtype == torch.float32 and i == 1
    assert tokenizer.decode(target.tolist()) == "IT'S TWO"

    sampler = DurationBatchSampler([u.duration for u in utts], 1.0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    seen = []
    for batch in loader:
        assert batch.waves.shape == (len(batch.indices), batch.wave_lengths.max())
        assert len(batch.indices) * batch.waves.shape[1] <= SAMPLE_RATE * 1.0 or len(batch.indices) == 1
        for row, n, wave_length, i in zip(batch.targets, batch.target_lengths, batch.wave_lengths, batch.indices):
            assert wave_length == round(specs[i][0] * SAMPLE_RATE)
            assert tokenizer.decode(row[:n].tolist()) == normalize(specs[i][1])
            assert (row[n:] == 0).all()
        seen += batch.indices.tolist()
    assert sorted(seen) == list(range(len(specs)))


def test_datamodule_concatenates_manifests_drops_out_of_range_and_builds_loaders(tmp_path, caplog):
    a = make_corpus(tmp_path / "a", [(0.3, "ONE"), (0.6, "TWO"), (0.05, "TOO SHORT")])
    b = make_corpus(tmp_path / "b", [(0.4, "THREE"), (2.5, "TOO LONG")])
    write_manifest(tmp_path / "a.jsonl", a)
    write_manifest(tmp_path / "b.jsonl", b)
    write_manifest(tmp_path / "val.jsonl", a[:2])
    cfg = DataConfig(
        train_manifests=[str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")],
        val_manifests=[str(tmp_path / "val.jsonl")],
        max_batch_seconds=1.0,
        num_workers=0,
        max_duration=2.0,
    )
    dm = SpeechDataModule(cfg, CharTokenizer())
    with caplog.at_level(logging.INFO, logger="asr.training.datamodule"):
        dm.setup("fit")
    assert [u.text for u in dm.train_set] == ["ONE", "TWO", "THREE"]
    assert "a.jsonl: dropped 1 of 3 utterances outside [0.1, 2] s" in caplog.text  # reported per manifest
    assert "b.jsonl: dropped 1 of 2 utterances outside [0.1, 2] s" in caplog.text
    assert [u.text for u in dm.val_set] == ["ONE", "TWO"]

    train = dm.train_dataloader()
    assert isinstance(train.batch_sampler, DurationBatchSampler) and train.batch_sampler.sorta_grad
    assert sorted(i for batch in train for i in batch.indices.tolist()) == [0, 1, 2]
    val = dm.val_dataloader()
    assert not val.batch_sampler.shuffle and not val.batch_sampler.sorta_grad
    assert sorted(i for batch in val for i in batch.indices.tolist()) == [0, 1]


def test_the_experiment_seed_orders_the_batches_and_seeds_their_augmentation_and_the_workers(tmp_path):
    utts = make_corpus(tmp_path / "wav", [(0.2 + 0.01 * i, "A") for i in range(12)])
    write_manifest(tmp_path / "m.jsonl", utts)
    cfg = DataConfig(train_manifests=[str(tmp_path / "m.jsonl")], max_batch_seconds=1.0, num_workers=0,
                     sorta_grad=False)

    def drawn(seed: int) -> tuple[list[list[Draw]], int]:
        """The first epoch's batches (indices and augmentation seeds) and the workers' base seed."""
        dm = SpeechDataModule(cfg, CharTokenizer(), seed=seed)
        dm.setup("fit")
        loader = dm.train_dataloader()
        return list(loader.batch_sampler), loader.generator.initial_seed()

    assert drawn(1) == drawn(1)
    (batches, workers), (other_batches, other_workers) = drawn(1), drawn(2)
    assert flatten([[d.index for d in b] for b in batches]) != flatten([[d.index for d in b] for b in other_batches])
    assert {d.seed for d in flatten(batches)}.isdisjoint(d.seed for d in flatten(other_batches))
    assert workers != other_workers


def test_data_config_rejects_inverted_duration_range():
    with pytest.raises(ValueError, match="min_duration <= max_duration"):
        DataConfig(min_duration=5.0, max_duration=1.0)
    with pytest.raises(ValueError, match=r"data.speed_perturb: speeds must be above 0, got \[1.0, 0.0\]"):
        DataConfig(speed_perturb=[1.0, 0.0])
    assert DataConfig().train_manifests == [] and DataConfig().train_manifests is not DataConfig().train_manifests
    assert math.isclose(DataConfig().max_batch_seconds, 120.0)


def dominant_hz(wave: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(wave).abs()
    return spectrum.argmax().item() * SAMPLE_RATE / len(wave)


def test_speed_perturbation_plays_the_audio_faster_or_slower(tmp_path):
    utts = make_corpus(tmp_path / "wav", [(1.0, "a tone")])  # a 300 Hz tone
    plain = SpeechDataset(utts, CharTokenizer())[0][0]
    fast = SpeechDataset(utts, CharTokenizer(), Augmenter(AugmentConfig(), speeds=[1.25]))[0][0]
    slow = SpeechDataset(utts, CharTokenizer(), Augmenter(AugmentConfig(), speeds=[0.8]))[0][0]
    assert (len(plain), len(fast), len(slow)) == (16000, 12800, 20000)
    assert dominant_hz(plain) == pytest.approx(300, abs=2)
    assert dominant_hz(fast) == pytest.approx(375, abs=2) and dominant_hz(slow) == pytest.approx(240, abs=2)


def test_speed_perturbation_draws_every_speed_and_only_in_training(tmp_path):
    utts = make_corpus(tmp_path / "wav", [(0.5, "a"), (0.5, "b")])
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, utts)
    module = SpeechDataModule(DataConfig(train_manifests=[str(manifest)], val_manifests=[str(manifest)],
                                         speed_perturb=[0.9, 1.0, 1.1], num_workers=0), CharTokenizer())
    module.setup("fit")
    train, val = module.train_dataloader().dataset, module.val_dataloader().dataset
    assert {len(train[Draw(0, seed)][0]) for seed in range(60)} == {8889, 8000, 7273}
    assert {len(val[Draw(0, seed)][0]) for seed in range(10)} == {8000}


def test_reading_manifests_loads_no_torch():
    # asr/__init__.py imports its public names on first use, so tools that only read manifests stay light
    code = ("import sys, asr.core.manifest; assert 'torch' not in sys.modules, 'import asr.core.manifest loaded torch'; "
            "import asr; assert asr.DecoderConfig('greedy').kind == 'greedy' and 'torch' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("argv", [["--help"], ["synth", "--help"], ["serve", "--help"],
                                  ["transcribe", "--no-such-option"]])
def test_the_command_line_answers_help_and_usage_errors_without_torch(argv):
    # the parser's choices come from asr.inference.formats, and each command imports what it runs only when it runs
    code = ("import sys\nfrom asr.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as done:\n"
            "    print(done.code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert result.stdout.split()[-2:] == [str(0 if argv[-1] == "--help" else 2), "False"], result.stderr


# ---------------------------------------------------------------------------------------------- mixing


def test_mixing_weights_hold_in_the_batches_drawn_over_an_epoch(tmp_path):
    synthetic = make_corpus(tmp_path / "s", [(0.2 + 0.01 * i, "SYNTHETIC") for i in range(20)])
    real = make_corpus(tmp_path / "r", [(0.3 + 0.01 * i, "REAL") for i in range(4)])
    write_manifest(tmp_path / "s.jsonl", synthetic)
    write_manifest(tmp_path / "r.jsonl", real)
    cfg = DataConfig(train_manifests=[str(tmp_path / "s.jsonl"), str(tmp_path / "r.jsonl")],
                     train_weights=[0.5, 3.0], max_batch_seconds=2.0, num_workers=0, sorta_grad=False)
    dm = SpeechDataModule(cfg, CharTokenizer())
    dm.setup("fit")
    loader = dm.train_dataloader()
    drawn = {}
    for e in (0, 1):
        loader.batch_sampler.set_epoch(e)
        drawn[e] = [i for batch in loader for i in batch.indices.tolist()]
        texts = [dm.train_set[i].text for i in drawn[e]]
        assert texts.count("SYNTHETIC") == 10 and texts.count("REAL") == 12  # 0.5 x 20, 3 x 4
        assert all(drawn[e].count(i) == 3 for i in range(20, 24))  # each real utterance three times
        assert len(set(drawn[e]) & set(range(20))) == 10  # half the synthetic ones, none twice
    assert set(drawn[0]) != set(drawn[1])  # a different half each epoch


def test_a_draw_of_the_same_utterance_twice_in_an_epoch_is_augmented_differently(tmp_path):
    utts = make_corpus(tmp_path / "wav", [(0.5, "A")])
    dataset = SpeechDataset(utts, CharTokenizer(), Augmenter(AugmentConfig(noise=1.0)))
    sampler = DurationBatchSampler([0.5], 10.0, groups=[0], weights=[2.0])
    (first, second), = list(sampler)
    assert first.index == second.index == 0 and first.seed != second.seed
    assert not torch.equal(dataset[first][0], dataset[second][0])
    assert torch.equal(dataset[first][0], dataset[first][0])


@pytest.mark.parametrize("weights, message", [
    ([1.0], "one weight per train manifest \\(2\\), got 1"),
    ([1.0, -1.0], "must not be negative"),
    ([0.0, 0.0], "one must be above 0"),
])
def test_bad_mixing_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(train_manifests=["a.jsonl", "b.jsonl"], train_weights=weights)


def test_a_resumed_epoch_replays_the_augmentation_of_the_uninterrupted_one_with_workers(tmp_path):
    """DataLoader workers' own RNGs are not in a checkpoint: the draws' seeds must carry every random choice."""
    utts = make_corpus(tmp_path / "wav", [(0.3 + 0.02 * i, "A TONE") for i in range(12)])
    write_manifest(tmp_path / "m.jsonl", utts)
    cfg = DataConfig(train_manifests=[str(tmp_path / "m.jsonl")], train_weights=[1.5], max_batch_seconds=1.0,
                     num_workers=2, sorta_grad=False, speed_perturb=[0.9, 1.0, 1.1],
                     augment=AugmentConfig(noise=0.5, gain=0.5, clip=0.3, telephone=0.3))

    def batches(resume_at=None):
        dm = SpeechDataModule(cfg, CharTokenizer())
        dm.setup("fit")
        dm.load_state_dict(resume_at or {})
        loader = dm.train_dataloader()
        loader.batch_sampler.set_epoch(3)
        return [batch.waves for batch in loader]

    whole = batches()
    resumed = batches({"epoch": 3, "batches_done": 2})
    assert len(resumed) == len(whole) - 2
    assert all(torch.equal(a, b) for a, b in zip(whole[2:], resumed))
