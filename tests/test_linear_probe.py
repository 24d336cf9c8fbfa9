"""cola_tf.linear_probe: task splits, the probe itself, reports, bad files, the CLI."""
import json
import os

import gin
import numpy as np
import pytest
import soundfile as sf

from cola_tf.runtime import configuration
from cola_tf.export import frozen_encoder
from cola_tf import linear_probe
from cola_tf.probe import embedders
from cola_tf.probe import fit
from cola_tf.probe import protocol
from cola_tf.probe import speech_commands
from conftest import make_speech_commands_tree

SR = 16000


def tone_tree(root, words=4, speakers=12, takes=4, seed=0):
  """A Speech Commands v0.02 layout where the word sets the base pitch and the speaker two
  quieter partials, so both tasks are learnable from log-mel statistics."""
  rng = np.random.default_rng(seed)
  t = np.arange(SR) / SR
  lists = {"validation_list.txt": [], "testing_list.txt": []}
  for w in range(words):
    os.makedirs(os.path.join(root, f"word{w}"), exist_ok=True)
    for s in range(speakers):
      for k in range(takes):
        # Every speaker's pair of partials is unique, and every partial is also used by
        # training speakers (speakers 0 and 1 are the valid/test speakers).
        audio = (0.3 * np.sin(2 * np.pi * (300 + 250 * w) * t)
                 + 0.1 * np.sin(2 * np.pi * (2500 + 300 * (s % 4)) * t)
                 + 0.1 * np.sin(2 * np.pi * (4500 + 400 * (s // 4)) * t)
                 + 0.02 * rng.standard_normal(SR))
        rel = f"word{w}/spk{s:03d}_nohash_{k}.wav"
        sf.write(os.path.join(root, rel), audio.astype(np.float32), SR, subtype="PCM_16")
        if s == 0:
          lists["validation_list.txt"].append(rel)
        elif s == 1:
          lists["testing_list.txt"].append(rel)
  os.makedirs(os.path.join(root, "_background_noise_"), exist_ok=True)
  sf.write(os.path.join(root, "_background_noise_", "white_noise.wav"),
           (0.1 * rng.standard_normal(20 * SR)).astype(np.float32), SR, subtype="PCM_16")
  for name, rels in lists.items():
    with open(os.path.join(root, name), "w") as f:
      f.write("".join(r + "\n" for r in rels))
  return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  return tone_tree(str(tmp_path_factory.mktemp("sc")))


def test_keyword_splits_follow_the_lists_and_are_speaker_disjoint(tree):
  names, splits = speech_commands.keyword_task(tree, 35)
  assert names == [f"word{w}" for w in range(4)]
  assert {len(splits[s]) for s in ("valid", "test")} == {4 * 4}
  assert len(splits["train"]) == 4 * 10 * 4
  speakers = {s: {speech_commands.speaker_of(p) for p in splits[s].files} for s in splits}
  assert speakers["valid"] == {"spk000"} and speakers["test"] == {"spk001"}
  assert not speakers["train"] & (speakers["valid"] | speakers["test"])


def test_keyword_12_classes_add_unknown_and_silence(tree):
  names, splits = speech_commands.keyword_task(tree, 12)
  assert names == ["_silence_", "_unknown_"]  # no HEAR word in this tree: all unknown
  for split in splits.values():
    assert split.arrays and all(a.shape == (SR,) and l == "_silence_" for a, l in split.arrays)


def test_speaker_splits_share_speakers_but_no_clip(tree):
  names, splits = speech_commands.speaker_task(tree, min_clips=4)
  assert len(names) == 12
  files = [set(splits[s].files) for s in ("train", "valid", "test")]
  assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
  assert sum(len(f) for f in files) == 4 * 12 * 4
  assert set(splits["test"].labels) <= set(splits["train"].labels)
  with pytest.raises(ValueError, match="min_speaker_clips"):
    speech_commands.speaker_task(tree, min_clips=1000)


def test_fit_probe_keeps_the_best_validation_epoch():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(5, 16)) * 3

  def split(n):
    y = rng.integers(0, 5, n)
    return (centres[y] + rng.normal(size=(n, 16))).astype(np.float32), y.astype(np.int32)

  data = {"train": split(400), "valid": split(100), "test": split(100)}
  settings = fit.ProbeSettings(epochs=15, batch_size=64, learning_rate=1e-2,
                                        reference_batch=0, warmup_epochs=1, standardize=True)
  result = fit.fit_probe(data, 5, settings, verbose=False)
  valid = [h["valid_accuracy"] for h in result["history"]]
  assert result["valid_accuracy"] == max(valid)
  assert result["best_epoch"] == len(valid) - valid[::-1].index(max(valid))  # the last best
  assert result["test_accuracy"] > 0.9
  # Labels unrelated to the features: the probe must not find signal in the test split.
  shuffled = {s: (x, rng.permutation(y)) for s, (x, y) in data.items()}
  chance = fit.fit_probe(shuffled, 5, settings, verbose=False)
  assert chance["test_accuracy"] < 0.45


def test_seed_protocol_defaults_and_schedule():
  """audax's SC probe: batch 512, 50 epochs, lr 1e-3 x 512 / 256, 5 warmup epochs, cosine."""
  settings = fit.ProbeSettings()
  assert (settings.epochs, settings.batch_size, settings.weight_decay) == (50, 512, 0.0)
  assert settings.peak_learning_rate() == pytest.approx(2e-3) and not settings.standardize
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1024, 8)).astype(np.float32)  # 2 steps per epoch at batch 512
  y = (x[:, 0] > 0).astype(np.int32)
  data = {"train": (x, y), "valid": (x[:100], y[:100]), "test": (x[:100], y[:100])}
  lrs = [h["learning_rate"] for h in fit.fit_probe(data, 2, verbose=False)["history"]]
  assert len(lrs) == 50
  assert lrs[0] == pytest.approx(2e-3 * 1 / 10, rel=1e-3)  # epoch 1 ends at step 1 of 10 warmup
  assert max(lrs) == pytest.approx(2e-3, rel=1e-2) and lrs[-1] < 1e-6  # ~0 at the end
  assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))  # cosine: never rises after warmup
  with pytest.raises(ValueError, match="--warmup_epochs"):
    fit.fit_probe(data, 2, fit.ProbeSettings(epochs=4), verbose=False)


def test_probe_dense_starts_as_flax_dense():
  """audax's probe Dense is flax's nn.Dense: LeCun-normal kernel (truncated normal, std
  sqrt(1 / fan-in)), zero bias; Keras' default (Glorot uniform) would have std
  sqrt(2 / (fan-in + fan-out)) and a bounded range."""
  import tf_keras
  settings = fit.ProbeSettings()
  assert settings.kernel_initializer == "lecun_normal"
  layer, _, _ = fit._layer_and_optimizer(settings, 10, 400, 1)
  kernel, bias = (w.numpy() for w in layer.weights)
  assert kernel.std() == pytest.approx(np.sqrt(1 / 400), rel=0.05)
  assert np.abs(kernel).max() <= 2 * np.sqrt(1 / 400) / 0.87962566 + 1e-6  # truncated at 2 std
  assert not bias.any()
  glorot = tf_keras.initializers.GlorotUniform(seed=0)((400, 10)).numpy()
  assert glorot.std() != pytest.approx(kernel.std(), rel=0.05)


def test_clips_are_centre_cropped_or_centre_padded():
  long = np.arange(20, dtype=np.float32)
  np.testing.assert_array_equal(embedders.fit_clip(long, 10).numpy(), long[5:15])
  short = np.arange(1, 7, dtype=np.float32)
  np.testing.assert_array_equal(embedders.fit_clip(short, 10).numpy(),
                                [0, 0, 1, 2, 3, 4, 5, 6, 0, 0])


def test_baseline_cli_writes_the_report_and_skips_a_bad_file(tree, tmp_path, capsys):
  bad = os.path.join(tree, "word0", "zzzbad_nohash_0.wav")
  with open(bad, "wb") as f:
    f.write(b"RIFF but not really audio")
  try:
    out = str(tmp_path / "report")
    assert linear_probe.main(["--baseline", "logmel_stats", "--data", tree, "--task", "keyword",
                              "--epochs", "30", "--batch_size", "16", "--standardize",
                              "--learning_rate", "3e-3", "--reference_batch", "0",
                              "--output", out]) == 0
  finally:
    os.remove(bad)
  logged = capsys.readouterr()
  assert "zzzbad_nohash_0.wav" in logged.out + logged.err
  with open(os.path.join(out, "results.json")) as f:
    results = json.load(f)
  assert results["clips"] == {"train": 160, "valid": 16, "test": 16}  # the bad clip skipped
  assert results["test_accuracy"] >= 0.99  # the word sets the pitch: separable
  assert set(results["per_class_accuracy"]) == {f"word{w}" for w in range(4)}
  with open(os.path.join(out, "confusion.csv")) as f:
    rows = f.read().splitlines()
  assert rows[0] == "true\\predicted,word0,word1,word2,word3"
  assert sum(int(v) for r in rows[1:] for v in r.split(",")[1:]) == 16
  with open(os.path.join(out, "per_class.csv")) as f:
    assert f.readline().strip() == "class,test_clips,test_accuracy"
  with open(os.path.join(out, "confusion.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_speaker_task_from_the_cli(tree, tmp_path):
  out = str(tmp_path / "speaker")
  assert linear_probe.main(["--baseline", "logmel_stats", "--data", tree, "--task", "speaker",
                            "--min_speaker_clips", "4", "--epochs", "60", "--batch_size", "16",
                            "--learning_rate", "1e-2", "--reference_batch", "0", "--standardize",
                            "--output", out]) == 0
  with open(os.path.join(out, "results.json")) as f:
    results = json.load(f)
  assert len(results["classes"]) == 12
  assert results["test_accuracy"] > 0.8  # chance 1/12


@pytest.fixture(scope="module")
def random_exports(tmp_path_factory):
  """Exports of the tiny.gin encoder at random initialisation (no training needed)."""
  model_dir = str(tmp_path_factory.mktemp("run"))
  gin.clear_config()
  configuration.parse_gin(["tiny"], [], None)
  with open(os.path.join(model_dir, configuration.OPERATIVE_CONFIG), "w") as f:
    f.write(gin.config_str())
  gin.clear_config()
  outs = {}
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    outs[name] = os.path.join(model_dir, f"export-{name}")
    meta = frozen_encoder.export(model_dir, outs[name], random_init_seed=seed)
    assert meta["training_step"] == 0 and meta["checkpoint"] == f"random init (seed {seed})"
  gin.clear_config()
  return outs


def test_random_init_exports_are_seeded(random_exports):
  clips = np.random.default_rng(0).uniform(-0.5, 0.5, (3, SR)).astype(np.float32)
  emb = {k: embedders.ExportEmbedder(p).clips(clips).numpy() for k, p in random_exports.items()}
  np.testing.assert_allclose(emb["a"], emb["b"], rtol=1e-5, atol=1e-6)
  assert not np.allclose(emb["a"], emb["c"], atol=1e-3)


def test_probe_embeddings_ignore_gain(tree, random_exports):
  """The probe's input path (decode, centre fit, export) is gain invariant: a tree of the
  same clips 20 dB quieter gives the same features, clip and scene embeddings alike."""
  names, splits = speech_commands.keyword_task(tree, 35)
  index = {n: i for i, n in enumerate(names)}
  quiet_root = os.path.join(os.path.dirname(tree), "quiet")
  quiet = speech_commands.Split([], list(splits["valid"].labels))
  for path in splits["valid"].files:
    audio, rate = sf.read(path, dtype="float32")
    quiet.files.append(os.path.join(quiet_root, *path.split(os.sep)[-2:]))
    os.makedirs(os.path.dirname(quiet.files[-1]), exist_ok=True)
    sf.write(quiet.files[-1], 0.1 * audio, rate, subtype="FLOAT")
  for embedding in ("clip", "scene"):
    embedder = embedders.ExportEmbedder(random_exports["a"], embedding)
    loud_x, loud_y = embedders.embed_split(embedder, splits["valid"], index, SR)
    quiet_x, quiet_y = embedders.embed_split(embedder, quiet, index, SR)
    np.testing.assert_array_equal(loud_y, quiet_y)
    np.testing.assert_allclose(quiet_x, loud_x, rtol=1e-3, atol=1e-4)
  baseline = embedders.LogMelStatsEmbedder()
  np.testing.assert_allclose(embedders.embed_split(baseline, quiet, index, SR)[0],
                             embedders.embed_split(baseline, splits["valid"], index, SR)[0],
                             rtol=1e-3, atol=1e-3)


def test_export_cli_with_crop_augmentation(tree, random_exports, tmp_path):
  out = str(tmp_path / "crop")
  assert linear_probe.main(["--export", random_exports["a"], "--data", tree, "--epochs", "4",
                            "--warmup_epochs", "1", "--augment", "crop", "--output", out]) == 0
  with open(os.path.join(out, "results.json")) as f:
    results = json.load(f)
  assert results["augment"] == "crop" and len(results["history"]) == 4
  assert results["embedder"].startswith("small_cnn")
  assert 0.0 <= results["test_accuracy"] <= 1.0


def test_encoder_in_training_mode_as_audax_probe(tree, random_exports, tmp_path):
  """--encoder_mode training: train features with batch statistics (differ from inference),
  BatchNorm running statistics moved by them, the best epoch's statistics for test."""
  embedder = embedders.ExportEmbedder(random_exports["a"])
  names, splits = speech_commands.keyword_task(tree, 35)
  index = {n: i for i, n in enumerate(names)}
  before = embedder.encoder_state()
  inference = embedders.embed_split(embedder, splits["valid"], index, SR)
  modes = protocol.TrainingModeEncoder(embedder, splits, index, SR,
                                       fit.ProbeSettings(batch_size=8))
  train_x, train_y = modes.train(1)
  np.testing.assert_array_equal(train_y, embedders.embed_split(embedder, splits["train"],
                                                               index, SR)[1])
  moved = embedder.encoder_state()
  assert any(not np.allclose(a, b) for a, b in zip(before, moved))
  assert not np.allclose(modes.valid()[0], inference[0], atol=1e-4)  # new statistics
  modes.test(before)
  np.testing.assert_allclose(embedders.embed_split(embedder, splits["valid"], index, SR)[0],
                             inference[0], rtol=1e-5, atol=1e-5)  # restored
  out = str(tmp_path / "training_mode")
  assert linear_probe.main(["--export", random_exports["c"], "--data", tree, "--epochs", "3",
                            "--warmup_epochs", "1", "--encoder_mode", "training",
                            "--batch_size", "32", "--output", out]) == 0
  with open(os.path.join(out, "results.json")) as f:
    results = json.load(f)
  assert results["encoder_mode"] == "training" and len(results["history"]) == 3


def test_clear_errors(tree, tmp_path, capsys):
  assert linear_probe.main(["--baseline", "logmel_stats", "--data", str(tmp_path / "none")]) == 2
  assert "is not a directory" in capsys.readouterr().err
  assert linear_probe.main(["--export", str(tmp_path), "--data", tree]) == 2
  assert "not a cola_tf export" in capsys.readouterr().err
  assert linear_probe.main(["--baseline", "logmel_stats", "--data", tree, "--augment",
                            "crop"]) == 2
  assert "needs an encoder export" in capsys.readouterr().err
  assert linear_probe.main(["--baseline", "logmel_stats", "--data", tree, "--epochs", "3"]) == 2
  assert "--warmup_epochs (5.0) must be in [0, --epochs (3))" in capsys.readouterr().err
  assert linear_probe.main(["--baseline", "logmel_stats", "--data", tree, "--encoder_mode",
                            "training"]) == 2
  assert "--encoder_mode training needs an encoder export" in capsys.readouterr().err


def test_espeak_tree_probes_end_to_end(tmp_path):
  """The generator's layout (espeak-ng speech when installed) through the whole protocol."""
  root = str(tmp_path / "sc")
  make_speech_commands_tree(root, num_words=3, num_speakers=10)
  result = protocol.run(embedders.LogMelStatsEmbedder(), protocol.ProbeTask(root),
                        settings=fit.ProbeSettings(epochs=5, warmup_epochs=1),
                        output=str(tmp_path / "r"), verbose=False)
  counts = {}
  for split, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
    with open(os.path.join(root, name)) as f:
      counts[split] = sum(1 for line in f if line.strip())
  assert {s: result["description"]["clips"][s] for s in counts} == counts
  assert result["description"]["clips"]["train"] == 3 * 10 - sum(counts.values())
  assert len(result["history"]) == 5


def test_feature_cache_embeds_each_file_once_with_equal_results(tree):
  class Counting(embedders.LogMelStatsEmbedder):
    clips_seen = 0

    def clips(self, waveforms):
      Counting.clips_seen += int(waveforms.shape[0])
      return super().clips(waveforms)

  embedder, cache = Counting(), {}
  names, splits = speech_commands.keyword_task(tree, 12)  # files + in-memory _silence_ clips
  index = {n: i for i, n in enumerate(names)}
  plain = embedders.embed_split(embedder, splits["train"], index, SR)
  first = Counting.clips_seen
  cached = embedders.embed_split(embedder, splits["train"], index, SR, cache=cache)
  again = embedders.embed_split(embedder, splits["train"], index, SR, cache=cache)
  silence = len(splits["train"].arrays)
  assert Counting.clips_seen == 2 * first + silence  # the files once more, then silence only
  for x, y in (cached, again):
    np.testing.assert_allclose(x, plain[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y, plain[1])
