"""Export (SavedModel, TensorFlow alone) and the HEAR-API module over it."""
import json
import os
import shutil
import subprocess
import sys
import warnings

import gin
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

import hear_module
from cola_tf.export import encoder_frames
from cola_tf.export import frozen_encoder as export_lib
from cola_tf.export import metadata as export_metadata
from cola_tf.hear import tasks as hear_tasks
from cola_tf import prepare_speech_commands
from cola_tf.probe import speech_commands
from conftest import REPO, make_speech_commands_tree, subprocess_env

SR = 16000


@pytest.fixture(scope="module")
def trained(tiny_run):
  return tiny_run


def test_metadata(trained):
  _, export_dir = trained
  with open(os.path.join(export_dir, "cola_metadata.json")) as f:
    meta = json.load(f)
  assert meta["sample_rate"] == SR and meta["scene_embedding_size"] == 192
  assert meta["timestamp_hop_ms"] == 50.0 and meta["window_samples"] == 15360
  assert meta["training_step"] == 200 and meta["encoder"] == "small_cnn"
  assert meta["frontend"]["num_mel_bins"] == 64 and meta["frontend"]["normalization"] == "none"
  assert meta["frontend"]["waveform_normalization"] == "l2_window"
  assert meta["frontend"]["padding"] == "fft_reflect" and meta["frontend"]["log_floor"] == 1e-8
  assert meta["training_positive_noise_stddev"] == 0.001
  assert len(meta["gin_config_sha1"]) == 40


def test_savedmodel_loads_with_tensorflow_alone(trained):
  _, export_dir = trained
  code = f"""
import sys
for blocked in ("cola_tf", "gin", "tf_keras", "keras", "official", "hear_module"):
  sys.modules[blocked] = None
import numpy as np, tensorflow as tf
m = tf.saved_model.load({export_dir!r})
x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 24000)).astype(np.float32)
e, t = m.timestamp_embeddings(x)
s = m.scene_embeddings(x)
w = m.signatures["scene_embeddings"](audio=tf.constant(x))
print(e.shape, t.shape, s.shape, float(np.abs(s.numpy() - list(w.values())[0].numpy()).max()))
"""
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300, env={k: v for k, v in subprocess_env().items()
                                          if k != "PYTHONPATH"}, cwd="/")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().startswith("(2, 31, 192) (2, 31) (2, 192) 0.0")


def test_exported_numbers_equal_the_training_encoder(trained, clean_gin):
  model_dir, export_dir = trained
  frontend, model, window, _, _ = export_lib.load_trained(model_dir)
  saved = tf.saved_model.load(export_dir)
  rng = np.random.default_rng(1)
  windows = rng.uniform(-0.5, 0.5, (5, window)).astype(np.float32)
  want = model.encoder(frontend(windows), training=False).numpy()
  np.testing.assert_allclose(saved.window_embeddings(windows).numpy(), want, rtol=1e-4,
                             atol=1e-5)
  # Frame k of the timestamp embeddings is the window centred at k * 50 ms, zero-padded.
  clip = rng.uniform(-0.5, 0.5, (1, 20000)).astype(np.float32)
  emb, stamps = saved.timestamp_embeddings(clip)
  padded = np.concatenate([np.zeros(window // 2), clip[0], np.zeros(window)]).astype(np.float32)
  for k in (0, 7, int(stamps.shape[1]) - 1):
    start = k * 800
    ref = model.encoder(frontend(padded[None, start:start + window]), training=False).numpy()
    np.testing.assert_allclose(emb[0, k].numpy(), ref[0], rtol=1e-4, atol=1e-5)
    assert float(stamps[0, k]) == pytest.approx(k * 50.0)
  # Scene: windows within the clip, every 0.48 s, the last one ending at the clip's end.
  for samples, starts in ((16000, [0, 640]), (30000, [0, 7680, 14640]), (15360, [0]),
                          (8000, [0])):
    audio = rng.uniform(-0.5, 0.5, (1, samples)).astype(np.float32)
    padded = np.concatenate([audio[0], np.zeros(window, np.float32)])
    windows = np.stack([padded[s:s + window] for s in starts])
    want = model.encoder(frontend(windows), training=False).numpy().mean(axis=0)
    np.testing.assert_allclose(saved.scene_embeddings(audio)[0].numpy(), want, rtol=1e-4,
                               atol=1e-5)
  # Clip: the whole clip is one model input (104 frames for 1 s), as the seed's probe.
  audio = rng.uniform(-0.5, 0.5, (2, 16000)).astype(np.float32)
  assert frontend(audio).shape[1] == 104
  np.testing.assert_allclose(saved.clip_embeddings(audio).numpy(),
                             model.encoder(frontend(audio), training=False).numpy(), rtol=1e-4,
                             atol=1e-5)
  gin.clear_config()


def test_embeddings_ignore_gain_through_export_and_hear(trained):
  """A clip and the same clip 20 dB quieter give the same scene, timestamp and clip
  embeddings (the recipe's L2 waveform normalisation, inside the export)."""
  _, export_dir = trained
  model = hear_module.load_model(export_dir)
  audio = tf.random.uniform((2, int(1.7 * SR)), -0.5, 0.5, seed=3)
  quiet = audio * 0.1
  np.testing.assert_allclose(hear_module.get_scene_embeddings(quiet, model).numpy(),
                             hear_module.get_scene_embeddings(audio, model).numpy(),
                             rtol=1e-4, atol=1e-5)
  loud_emb, loud_ts = hear_module.get_timestamp_embeddings(audio, model)
  quiet_emb, quiet_ts = hear_module.get_timestamp_embeddings(quiet, model)
  np.testing.assert_array_equal(quiet_ts.numpy(), loud_ts.numpy())
  np.testing.assert_allclose(quiet_emb.numpy(), loud_emb.numpy(), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(model.saved_model.clip_embeddings(quiet).numpy(),
                             model.saved_model.clip_embeddings(audio).numpy(), rtol=1e-4,
                             atol=1e-5)


@pytest.mark.parametrize("mode,invariant", [("l2_clip", True), ("none", False)])
def test_clip_level_normalisation_in_the_export(mode, invariant):
  """'l2_clip' (google-research's variant) scales each whole clip before windowing."""
  from cola_tf import encoders
  from cola_tf import frontend as frontend_lib
  frontend = frontend_lib.LogMelFrontend(waveform_normalization=mode)
  encoder = encoders.build_encoder("small_cnn", input_shape=(100, 64))
  module = export_lib.FrozenEncoder(frontend, encoder, 15360)
  audio = np.random.default_rng(4).uniform(-0.5, 0.5, (2, 24000)).astype(np.float32)
  for fn in (module.scene_embeddings, module.clip_embeddings,
             lambda a: module.timestamp_embeddings(a)[0]):
    same = np.allclose(fn(0.1 * audio).numpy(), fn(audio).numpy(), rtol=1e-4, atol=1e-5)
    assert same == invariant


@pytest.mark.parametrize("mode,padding,normalization", [
    (mode, "fft_reflect", norm) for mode in ("l2_window", "l2_clip", "none")
    for norm in ("none", "per_window")] + [  # the recipe's framing: every combination
    ("l2_window", "centre_reflect", "none"), ("l2_clip", "centre_reflect", "per_window"),
    ("l2_window", "end_zero", "per_window"), ("none", "end_zero", "none")])
def test_shared_stft_equals_the_per_window_reference(mode, padding, normalization):
  """Timestamp and scene embeddings from one STFT per clip equal the reference, which puts
  each window through the whole frontend. The encoder here flattens the log-mel, so the
  embeddings are every model input number: an edge frame or a window's scale gone wrong
  shows. Clips: empty, shorter than a window, exactly one window, 1 s (scene windows on the
  frame grid), several seconds (last scene window off it); batches of 1 to 3."""
  import tf_keras
  from cola_tf import frontend as frontend_lib
  frontend = frontend_lib.LogMelFrontend(waveform_normalization=mode, padding=padding,
                                         normalization=normalization)
  frames = frontend.num_frames(15360)
  encoder = tf_keras.Sequential([tf_keras.Input((frames, 64)), tf_keras.layers.Flatten()])
  module = export_lib.FrozenEncoder(frontend, encoder, 15360, chunk_windows=7)
  assert module.shared_stft
  rng = np.random.default_rng(5)
  for batch, samples in ((1, 0), (2, 100), (1, 15360), (2, 16000), (3, 3 * SR + 37)):
    # A rising envelope: windows of very different norms within one clip.
    audio = (rng.uniform(-0.5, 0.5, (batch, samples))
             * np.linspace(0.01, 1.0, samples)).astype(np.float32)
    emb, stamps = module.timestamp_embeddings(audio)
    ref, ref_stamps = module.timestamp_embeddings_reference(audio)
    np.testing.assert_array_equal(stamps.numpy(), ref_stamps.numpy())
    np.testing.assert_allclose(emb.numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(module.scene_embeddings(audio).numpy(),
                               module.scene_embeddings_reference(audio).numpy(),
                               rtol=1e-4, atol=1e-4)


def test_shared_stft_falls_back_off_the_frame_grid():
  """A frontend hop that does not divide the 50 ms timestamp hop: the reference path."""
  import tf_keras
  from cola_tf import frontend as frontend_lib
  frontend = frontend_lib.LogMelFrontend(hop_length=150)
  frames = frontend.num_frames(15360)
  encoder = tf_keras.Sequential([tf_keras.Input((frames, 64)), tf_keras.layers.Flatten()])
  module = export_lib.FrozenEncoder(frontend, encoder, 15360)
  assert not module.shared_stft
  audio = np.random.default_rng(6).uniform(-0.5, 0.5, (1, 20000)).astype(np.float32)
  np.testing.assert_array_equal(module.timestamp_embeddings(audio)[0].numpy(),
                                module.timestamp_embeddings_reference(audio)[0].numpy())


def test_an_encoder_without_fast_mode_exports_without_it(tmp_path):
  """No pooling layer named 'pool': the export has the exact functions only, says so, and
  hear_module refuses fast=True by name."""
  import tf_keras
  from cola_tf import frontend as frontend_lib
  encoder = tf_keras.Sequential([tf_keras.Input((None, 64)), tf_keras.layers.Dense(8),
                                 tf_keras.layers.GlobalAveragePooling1D()])
  module = export_lib.FrozenEncoder(frontend_lib.LogMelFrontend(), encoder, 15360)
  assert not module.fast_embeddings
  assert export_lib.save(module, str(tmp_path / "export"))["fast_embeddings"] is False
  audio = np.random.default_rng(6).uniform(-0.5, 0.5, (1, 20000)).astype(np.float32)
  model = hear_module.load_model(str(tmp_path / "export"))
  assert hear_module.get_timestamp_embeddings(audio, model)[0].shape == (1, 26, 8)
  with pytest.raises(ValueError, match="has no fast embeddings"):
    hear_module.load_model(str(tmp_path / "export"), fast=True)


def test_exported_shared_stft_equals_the_reference(trained):
  """The trained small_cnn export: its (shared-STFT) timestamp and scene embeddings equal
  the per-window reference functions saved beside them."""
  saved = tf.saved_model.load(trained[1])
  audio = np.random.default_rng(7).uniform(-0.5, 0.5, (2, 45000)).astype(np.float32)
  np.testing.assert_allclose(saved.timestamp_embeddings(audio)[0].numpy(),
                             saved.timestamp_embeddings_reference(audio)[0].numpy(),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(saved.scene_embeddings(audio).numpy(),
                             saved.scene_embeddings_reference(audio).numpy(),
                             rtol=1e-4, atol=1e-5)


def _cosines(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_fast_embeddings_are_close_to_exact_and_do_not_depend_on_pieces(trained, clean_gin):
  """fast=True (one encoder pass per clip, cola_tf.export.encoder_frames): the exact mode's
  timestamps and sizes, close to its numbers (not equal: docs/hear.md); the trunk's pieces
  (frames_per_call, with margins) do not change them."""
  model_dir, export_dir = trained
  exact = hear_module.load_model(export_dir)
  fast = hear_module.load_model(export_dir, fast=True)
  rng = np.random.default_rng(8)
  audio = (rng.uniform(-0.5, 0.5, (2, 70000)) * np.repeat(rng.uniform(0.05, 1, 35), 2000)
           ).astype(np.float32)
  (e, te), (f, tf_) = (hear_module.get_timestamp_embeddings(audio, m) for m in (exact, fast))
  assert e.shape == f.shape == (2, 88, 192)
  np.testing.assert_array_equal(te.numpy(), tf_.numpy())
  assert np.median(_cosines(e, f)) > 0.9
  assert _cosines(e, f).max() < 1 - 1e-4  # not the exact path under another name
  # Per frame position (docs/hear.md's bound): the clip's first and last 3 frames >= 0.95,
  # every frame >= 0.7 (measured on this export's kind of audio: >= 0.98 and 0.75).
  by_position = np.asarray(_cosines(e, f)).reshape(2, -1).min(axis=0)
  assert by_position[:3].min() >= 0.95 and by_position[-3:].min() >= 0.95, by_position
  assert by_position.min() >= 0.7, by_position
  assert _cosines(hear_module.get_scene_embeddings(audio, exact),
                  hear_module.get_scene_embeddings(audio, fast)).min() > 0.9
  frontend, model, window, _, _ = export_lib.load_trained(model_dir)
  starts = tf.range(88) * 800
  whole = encoder_frames.EncoderFrames(frontend, model.encoder, window)
  pieces = encoder_frames.EncoderFrames(frontend, model.encoder, window, frames_per_call=96)
  np.testing.assert_allclose(pieces.embed_windows(audio, starts, window // 2).numpy(),
                             whole.embed_windows(audio, starts, window // 2).numpy(),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(whole.embed_windows(audio, starts, window // 2).numpy(), f.numpy(),
                             rtol=1e-4, atol=1e-5)
  gin.clear_config()


def test_fast_mode_errors(trained, tmp_path):
  copy = str(tmp_path / "older_export")
  shutil.copytree(trained[1], copy)
  metadata = export_metadata.read(copy)
  del metadata["fast_embeddings"]  # as exports written before the fast mode
  export_metadata.write(copy, metadata)
  assert hear_module.load_model(copy).fast is False
  with pytest.raises(ValueError, match="has no fast embeddings .* re-export it"):
    hear_module.load_model(copy, fast=True)
  with pytest.raises(ValueError, match="fast must be true or false"):
    hear_module.load_model(trained[1], fast="yes")


def test_hear_api_shapes_timestamps_and_batches(trained):
  _, export_dir = trained
  model = hear_module.load_model(export_dir)
  assert isinstance(model, tf.Module) and model.sample_rate == SR
  assert type(model.scene_embedding_size) is int and type(model.timestamp_embedding_size) is int
  for n, seconds in ((1, 1.07), (3, 0.2), (2, 4.0)):  # includes shorter than one 0.96 s crop
    audio = tf.random.uniform((n, int(seconds * SR)), -0.5, 0.5)
    emb, ts = hear_module.get_timestamp_embeddings(audio, model)
    assert emb.dtype == tf.float32 and ts.dtype == tf.float32
    assert emb.shape[0] == n and emb.shape[2] == model.timestamp_embedding_size
    assert ts.shape == emb.shape[:2]
    diffs = np.diff(ts.numpy(), axis=1)
    if diffs.size:
      np.testing.assert_allclose(diffs, 50.0)
    assert ts.numpy().min() == 0.0 and ts.numpy().max() <= 1000 * seconds
    assert ts.numpy().max() > 1000 * seconds - 50
    scene = hear_module.get_scene_embeddings(audio, model)
    assert scene.shape == (n, model.scene_embedding_size) and scene.dtype == tf.float32
  many = tf.random.uniform((1000, 3200), -0.5, 0.5)
  scene = hear_module.get_scene_embeddings(many, model)
  assert scene.shape == (1000, model.scene_embedding_size)
  np.testing.assert_allclose(scene[:2].numpy(), hear_module.get_scene_embeddings(many[:2], model),
                             rtol=1e-5, atol=1e-6)  # batching does not change the numbers


def test_hear_api_long_audio(trained):
  _, export_dir = trained
  model = hear_module.load_model(export_dir)
  long = tf.random.uniform((1, int(10.5 * 60 * SR)), -0.1, 0.1)
  emb, ts = hear_module.get_timestamp_embeddings(long, model)
  assert emb.shape == (1, 12601, model.timestamp_embedding_size)
  assert float(ts[0, -1]) == pytest.approx(630000.0)
  assert hear_module.get_scene_embeddings(long, model).shape == (1, model.scene_embedding_size)


@pytest.mark.parametrize("audio,match", [
    (np.zeros(16000, np.float32), r"got shape \(16000,\)"),
    (np.zeros((1, 16000), np.int16), r"got dtype int16 \(integer PCM: divide by its full "
                                     r"scale, e.g. int16 by 32768\)"),
    (np.zeros((1, 16000), np.int32), "must be float32 .* got dtype int32"),
    (np.zeros((1, 16000), bool), "got dtype bool"),
    (np.full((1, 16000), np.nan, np.float32), "NaN or Inf"),
])
def test_hear_api_bad_input_errors(trained, audio, match):
  model = hear_module.load_model(trained[1])
  for fn in (hear_module.get_scene_embeddings, hear_module.get_timestamp_embeddings):
    with pytest.raises(ValueError, match=match):
      fn(audio, model)


def test_hear_api_casts_floats_and_warns_once_on_loud_audio(trained, monkeypatch):
  """float64 (soundfile's default) and float16 are cast to float32; audio peaking far
  outside [-1, 1] is embedded, with one AudioRangeWarning per process."""
  model = hear_module.load_model(trained[1])
  audio = np.random.default_rng(8).uniform(-0.5, 0.5, (2, 20000))
  want = hear_module.get_scene_embeddings(audio.astype(np.float32), model).numpy()
  for cast in (np.float64, np.float16):
    got = hear_module.get_scene_embeddings(audio.astype(cast), model).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-2 if cast == np.float16 else 1e-6, atol=1e-3)
  emb, _ = hear_module.get_timestamp_embeddings(tf.constant(audio), model)  # a float64 tensor
  assert emb.dtype == tf.float32
  monkeypatch.setattr(hear_module, "_warned_loud", False)
  with pytest.warns(hear_module.AudioRangeWarning,
                    match=r"peaks at \|x\| = 3\.27\de\+04, far outside"):
    loud = hear_module.get_scene_embeddings((32767 * 2 * audio).astype(np.float32), model)
  np.testing.assert_allclose(loud.numpy(), want, rtol=1e-4, atol=1e-5)  # the recipe: gain-free
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # no second warning
    hear_module.get_timestamp_embeddings((32767 * 2 * audio).astype(np.float32), model)
  monkeypatch.setattr(hear_module, "_warned_loud", False)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # 1.5 is the threshold
    hear_module.get_scene_embeddings(np.full((1, 100), 1.5, np.float32), model)


def test_hear_api_zero_sample_clips_are_silence(trained):
  """[n, 0] audio: the scene embedding of one all-zero window; one timestamp frame, 0 ms."""
  model = hear_module.load_model(trained[1])
  silence = model.saved_model.window_embeddings(np.zeros((1, 15360), np.float32)).numpy()
  empty = np.zeros((2, 0), np.float32)
  scene = hear_module.get_scene_embeddings(empty, model).numpy()
  np.testing.assert_allclose(scene, np.repeat(silence, 2, 0), rtol=1e-5, atol=1e-5)
  emb, stamps = hear_module.get_timestamp_embeddings(empty, model)
  assert emb.shape == (2, 1, model.timestamp_embedding_size)
  np.testing.assert_array_equal(stamps.numpy(), [[0.0], [0.0]])
  np.testing.assert_allclose(emb.numpy()[:, 0], np.repeat(silence, 2, 0), rtol=1e-5, atol=1e-5)


def test_load_model_options(trained):
  """heareval passes --model-options as keywords: clips_per_call; anything else is refused."""
  model = hear_module.load_model(trained[1], clips_per_call=1)
  assert model.clips_per_call == 1
  audio = np.random.default_rng(9).uniform(-0.5, 0.5, (3, 17000)).astype(np.float32)
  np.testing.assert_allclose(hear_module.get_scene_embeddings(audio, model).numpy(),
                             hear_module.get_scene_embeddings(
                                 audio, hear_module.load_model(trained[1])).numpy(),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['batch', 'reference'\]; "
                                       r"accepted: clips_per_call: an int >= 1"):
    hear_module.load_model(trained[1], reference=True, batch=4)
  for bad in (0, 2.0, True, "4"):
    with pytest.raises(ValueError, match="clips_per_call must be an int >= 1"):
      hear_module.load_model(trained[1], clips_per_call=bad)


def test_load_model_errors(tmp_path):
  with pytest.raises(ValueError, match="needs the path"):
    hear_module.load_model()
  with pytest.raises(ValueError, match="is not a cola_tf export"):
    hear_module.load_model(str(tmp_path))


def test_hear_validator_says_it_looks_good(trained):
  proc = subprocess.run([sys.executable, "-c", "from hearvalidator.validate import main; main()",
                         "hear_module", "--model", trained[1]], cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "Looks good!" in proc.stdout


def _prepared(tmp_path, classes, probe_grid=None):
  src = str(tmp_path / "speech_commands_v0.02")
  make_speech_commands_tree(src, num_words=8, num_speakers=10)
  task_dir, counts, vocabulary = hear_tasks.write_speech_commands_task(
      src, str(tmp_path / "tasks"), classes, probe_grid=probe_grid)
  return src, task_dir, counts, vocabulary


@pytest.mark.parametrize("classes", [12, 35])
def test_prepare_speech_commands_writes_a_hear_task(tmp_path, classes):
  src, task_dir, counts, vocabulary = _prepared(tmp_path, classes)
  with open(os.path.join(task_dir, "task_metadata.json")) as f:
    meta = json.load(f)
  assert meta["embedding_type"] == "scene" and meta["prediction_type"] == "multiclass"
  assert meta["split_mode"] == "trainvaltest" and meta["splits"] == ["train", "valid", "test"]
  assert meta["evaluation"] == ["top1_acc"] and meta["sample_duration"] == 1.0
  assert meta["evaluation_params"]["task_specific_param_grid"] == {"hidden_layers": [0]}
  with open(os.path.join(task_dir, "labelvocabulary.csv")) as f:
    rows = f.read().splitlines()
  assert rows[0] == "idx,label" and [r.split(",")[1] for r in rows[1:]] == vocabulary
  words = sorted(d for d in os.listdir(src) if not d.startswith("_")
                 and os.path.isdir(os.path.join(src, d)))
  lists = {}
  for split, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
    with open(os.path.join(src, name)) as f:
      lists[split] = {l.strip() for l in f if l.strip()}
  for split in ("train", "valid", "test"):
    with open(os.path.join(task_dir, f"{split}.json")) as f:
      labels = json.load(f)
    folder = os.path.join(task_dir, "16000", split)
    assert sorted(labels) == sorted(os.listdir(folder)) and len(labels) == counts[split]
    for name, (label,) in labels.items():
      audio, rate = sf.read(os.path.join(folder, name))
      assert rate == 16000 and audio.ndim == 1 and audio.size == 16000
      if label == "_silence_":
        continue
      word, original = name.split("-", 1)
      rel = f"{word}/{original}"
      assert split == ("valid" if rel in lists["valid"] else "test" if rel in lists["test"]
                       else "train")
      if classes == 35:
        assert label == word
      else:
        assert label == (word if word in speech_commands.TEN_WORDS else "_unknown_")
  if classes == 12:
    assert "_silence_" in vocabulary
  else:
    assert vocabulary == words


def test_prepare_speech_commands_probe_grid_errors(tmp_path, capsys):
  src = str(tmp_path / "sc")
  make_speech_commands_tree(src, num_words=2, num_speakers=4)
  args = ["--src", src, "--dst", str(tmp_path / "tasks")]
  assert prepare_speech_commands.main(args + ["--probe_grid", "{max_epochs: 3}"]) == 2
  assert "--probe_grid is not JSON" in capsys.readouterr().err
  assert prepare_speech_commands.main(args + ["--probe_grid", '{"max_epochs": 3}']) == 2
  assert "'max_epochs' must map to a non-empty list" in capsys.readouterr().err


def test_export_cli_never_replaces_silently_and_errors_in_one_line(trained, tmp_path, capsys):
  """Wrong requests are refused before any work, with one line and exit 2; an export to a
  new folder works; a failed save leaves no staging folder."""
  from cola_tf.export import __main__ as export_cli
  model_dir, _ = trained  # shared: nothing here may write into it
  checkpoint = tf.train.latest_checkpoint(model_dir)
  refusals = [
      (["--random_init_seed", "0"], "would replace the run's export"),
      (["--checkpoint", checkpoint], "would replace the run's export"),
      ([], "exists; pass --overwrite"),
      (["--checkpoint", checkpoint + "9", "--output", str(tmp_path / "x")], "no such checkpoint"),
      (["--checkpoint", checkpoint, "--random_init_seed", "1", "--output", str(tmp_path / "y")],
       "not both")]
  for args, message in refusals:
    assert export_cli.main(["--model_dir", model_dir] + args) == 2, args
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
  assert export_cli.main(["--model_dir", str(tmp_path)]) == 2
  assert "holds no operative_config.gin" in capsys.readouterr().err
  out = str(tmp_path / "random")
  assert export_cli.main(["--model_dir", model_dir, "--random_init_seed", "0", "--output",
                          out]) == 0
  assert export_metadata.read(out)["training_step"] == 0
  assert export_cli.main(["--model_dir", model_dir, "--random_init_seed", "0", "--output",
                          out]) == 2  # exists now
  assert export_cli.main(["--model_dir", model_dir, "--random_init_seed", "1", "--output", out,
                          "--overwrite"]) == 0
  assert not os.path.exists(out + ".tmp-export")


def test_an_interrupted_save_leaves_no_staging_folder(tmp_path, monkeypatch):
  """A signal during the export (KeyboardInterrupt from the signal thread) or a full disk:
  the staging folder is removed, the target left as it was."""
  from cola_tf import encoders
  from cola_tf import frontend as frontend_lib
  module = export_lib.FrozenEncoder(frontend_lib.LogMelFrontend(), encoders.small_cnn.small_cnn(
      (100, 64), channels=(4, 8)), 15360)
  def interrupted(*args, **kwargs):
    tf.io.gfile.makedirs(args[1])  # a half-written SavedModel
    raise KeyboardInterrupt
  monkeypatch.setattr(tf.saved_model, "save", interrupted)
  with pytest.raises(KeyboardInterrupt):
    export_lib.save(module, str(tmp_path / "export"))
  assert os.listdir(tmp_path) == []


def test_hear_benchmark_measures_peak_memory_of_a_long_clip(trained):
  """The HEAR benchmark's memory probe: a fresh process, its peak above the loaded export's,
  and the output it held (fast timestamps: one 192-d float32 frame every 50 ms)."""
  from cola_tf.benchmarks import hear_embeddings  # pylint: disable=import-outside-toplevel
  m = hear_embeddings.peak_memory(trained[1], "timestamp fast", 0.5)
  assert 0 < m["loaded_mib"] <= m["peak_mib"]
  frames = 30 * 1000 // 50 + 1
  assert m["output_mib"] == pytest.approx(frames * 192 * 4 / 2**20)


def test_hear_benchmark_times_in_rounds_and_pairs_ratios_by_round(trained):
  """The benchmark calls every function once per round, so a load that changes between rounds
  (this shared machine) moves both sides of a round's ratio alike; its ratios are medians of
  the rounds' own ratios. Then one short-clip row of the real export."""
  from cola_tf.benchmarks import hear_embeddings  # pylint: disable=import-outside-toplevel
  order = []
  fns = {name: (lambda audio, name=name: order.append(name) or tf.constant([1.0]))
         for name in ("scene", "timestamp_fast")}
  times = hear_embeddings.time_rounds(fns, None, 3)
  assert order == ["scene", "timestamp_fast"] * 4  # a warm-up call each, then 3 rounds
  assert {name: len(t) for name, t in times.items()} == {"scene": 3, "timestamp_fast": 3}
  # Load 10x higher from the third round on: fast is 2x scene's speed in all rounds but one,
  # and the paired median says 2; a ratio of separate medians would say 10 / 2.5 = 4.
  times = {"scene": [1.0, 1.0, 10.0, 10.0, 10.0], "timestamp_fast": [0.5, 0.5, 2.5, 5.0, 5.0]}
  assert hear_embeddings.paired_ratio(times, "timestamp_fast", "scene") == (2.0, 2.0, 3.0)
  row = hear_embeddings.measure(tf.saved_model.load(trained[1]), 1.0, 1, 2)
  assert row["scene"] > 0 and row["timestamp_fast"] > 0
  low, high = row["timestamp_fast_over_scene_quartiles"]
  assert low <= row["timestamp_fast_over_scene"] <= high
