"""Sources, decoding and the pair pipeline on generated corpora in every layout."""
import csv
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from cola_tf import frontend as frontend_lib
from cola_tf.data import audio
from cola_tf.data import tfrecord_format
from cola_tf.data import tfrecord_writer
from cola_tf.data import pipeline
from cola_tf.data import sources
from cola_tf.data import tfds_source
from cola_tf.data import tfrecord_source
from conftest import REPO, graph_ops, make_speech_commands_tree, subprocess_env

SR = 16000


def _tone(freq, seconds, rate=SR, channels=1, amp=0.5):
  t = np.arange(int(seconds * rate)) / rate
  x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
  return np.stack([x] * channels, axis=1) if channels > 1 else x


def _write_corpus(root, n=12):
  """n clips with distinct lengths (the length identifies the clip), in five formats."""
  os.makedirs(os.path.join(root, "sub", "deeper"), exist_ok=True)
  formats = [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"), ("wav", "FLOAT"),
             ("mp3", None)]
  lengths = {}
  for i in range(n):
    ext, subtype = formats[i % len(formats)]
    folder = [root, os.path.join(root, "sub"), os.path.join(root, "sub", "deeper")][i % 3]
    path = os.path.join(folder, f"clip{i:02d}.{ext}")
    samples = 8000 + 400 * i
    sf.write(path, _tone(200 + 50 * i, samples / SR), SR, subtype=subtype)
    lengths[path] = samples
  with open(os.path.join(root, "notes.txt"), "w") as f:
    f.write("not audio, and not matching the extension filter\n")
  return lengths


def _lengths(source, shards=1, index=0):
  clips = pipeline.decoded_clips(source, SR, shards, index, seed=3)
  return sorted(int(tf.size(x)) for x in clips)


def test_folder_source_reads_every_clip_once_per_epoch_in_all_formats(tmp_path):
  lengths = _write_corpus(str(tmp_path))
  source = sources.FolderSource(str(tmp_path))
  assert len(source) == 12 and sorted(source.files()) == sorted(lengths)
  got = _lengths(source)
  # ogg and mp3 (lossy codecs) may pad a little; wav and flac are sample exact
  want = sorted(lengths.values())
  assert len(got) == 12
  np.testing.assert_allclose(got, want, atol=1200)
  exact = sorted(v for p, v in lengths.items() if not p.endswith((".ogg", ".mp3")))
  assert set(exact) <= set(got)
  # Sharded over 3 hosts: disjoint shards that cover the corpus.
  shards = [_lengths(source, 3, i) for i in range(3)]
  assert sorted(sum(shards, [])) == got
  only_flac = sources.FolderSource(str(tmp_path), extensions=("flac",))
  assert len(only_flac) == 3
  with pytest.raises(ValueError, match="no files with extensions"):
    sources.FolderSource(str(tmp_path), extensions=("aiff",))


def test_stereo_44k_and_resampling_keeps_a_1khz_tone(tmp_path):
  path = str(tmp_path / "stereo44k.wav")
  sf.write(path, _tone(1000.0, 1.0, rate=44100, channels=2), 44100, subtype="PCM_16")
  flac = str(tmp_path / "tone48k.flac")
  sf.write(flac, _tone(1000.0, 1.0, rate=48000), 48000, subtype="PCM_24")
  for p, rate in ((path, 44100), (flac, 48000)):
    waveform, ok = audio.load_file(p, SR)
    assert ok
    assert abs(waveform.size - SR) <= 1
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(waveform.size)))
    assert np.fft.rfftfreq(waveform.size, 1 / SR)[spectrum.argmax()] == pytest.approx(1000, abs=2)
    # A real low-pass filter: no aliasing products anywhere else in the band.
    peak = spectrum.max()
    far = np.abs(np.fft.rfftfreq(waveform.size, 1 / SR) - 1000) > 50
    assert spectrum[far].max() < 1e-2 * peak
    assert waveform.max() == pytest.approx(0.5, abs=0.02)


def _bad_corpus(root):
  """Six good clips and every kind of bad one; returns (bad names, wrong-extension file)."""
  os.makedirs(root)
  for i in range(6):
    sf.write(os.path.join(root, f"good{i}.wav"), _tone(300 + 100 * i, 1.5), SR, subtype="PCM_16")
  bad = {}
  bad["empty.wav"] = b""
  good = open(os.path.join(root, "good0.wav"), "rb").read()
  bad["truncated.wav"] = good[:30]
  bad["text.flac"] = b"this is not audio at all\n" * 20
  bad["random.ogg"] = np.random.default_rng(0).bytes(5000)
  for name, data in bad.items():
    with open(os.path.join(root, name), "wb") as f:
      f.write(data)
  sf.write(os.path.join(root, "zero_length.wav"), np.zeros(0, np.float32), SR, subtype="PCM_16")
  nan = _tone(440, 1.0)
  nan[100:200] = np.nan
  sf.write(os.path.join(root, "nan.wav"), nan, SR, subtype="FLOAT")
  # A FLAC file with a .wav name: TF's WAV decoder fails, libsndfile reads it: usable.
  sf.write(os.path.join(root, "really_flac.wav"), _tone(700, 1.5), SR, format="FLAC")
  names = sorted(os.path.join(root, n) for n in list(bad) + ["zero_length.wav", "nan.wav"])
  return names


def test_bad_files_are_skipped_counted_and_named(tmp_path):
  bad = _bad_corpus(str(tmp_path / "bad"))
  audio.BAD_FILES.reset()
  source = sources.FolderSource(str(tmp_path / "bad"))
  got = _lengths(source)
  assert len(got) == 7  # 6 good + the FLAC named .wav
  assert audio.BAD_FILES.names() == bad
  assert "skipped 6 bad audio file(s)" in audio.BAD_FILES.summary()


@pytest.mark.slow  # a process of its own
def test_training_on_a_corpus_with_bad_files_completes(tmp_path):
  root = str(tmp_path / "bad")
  bad = _bad_corpus(root)
  args = [sys.executable, "-m", "cola_tf.train", "--gin_file", "tiny",
          "--model_dir", str(tmp_path / "run"), "--gin_param", "train.source = @FolderSource()",
          "--gin_param", f"FolderSource.root = '{root}'", "--gin_param", "train.total_steps = 8",
          "--gin_param", "train.global_batch_size = 4", "--gin_param", "build_adamw.warmup_steps = 2",
          "--gin_param", "train.steps_per_loop = 4"]
  proc = subprocess.run(args, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "done at step 8" in proc.stdout
  for name in bad:
    assert f"skipping bad audio file {name}: " in proc.stdout
  assert "data: skipped 6 bad audio file(s)" in proc.stdout


def test_no_usable_file_is_a_clear_error_before_training(tmp_path):
  root = tmp_path / "allbad"
  root.mkdir()
  (root / "a.wav").write_bytes(b"RIFF....")
  (root / "b.flac").write_bytes(b"")
  audio.BAD_FILES.reset()
  with pytest.raises(ValueError, match=r"no usable audio in FolderSource.*skipped 2 bad"):
    pipeline.check_usable(sources.FolderSource(str(root)), SR)


def test_a_mostly_silent_corpus_is_named_with_a_warning(tmp_path):
  root = tmp_path / "quiet"
  root.mkdir()
  for i in range(5):
    sf.write(str(root / f"s{i}.wav"), np.zeros(SR, np.float32) if i else _tone(440, 1.0), SR,
             subtype="PCM_16")
  lines = []
  pipeline.check_usable(sources.FolderSource(str(root)), SR, lines.append)
  assert len(lines) == 1 and "4 of the first 5 clips" in lines[0] and "silent" in lines[0]
  lines.clear()
  (root / "s1.wav").unlink()
  for i in range(2, 5):
    sf.write(str(root / f"s{i}.wav"), _tone(300 + i, 1.0), SR, subtype="PCM_16")
  pipeline.check_usable(sources.FolderSource(str(root)), SR, lines.append)
  assert not lines


def _manifest(path, rows, header=("files", "labels", "duration")):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)


def test_manifest_paths_labels_and_line_numbered_errors(tmp_path):
  lengths = _write_corpus(str(tmp_path / "audio"), n=4)
  rows = [(os.path.relpath(p, tmp_path) if i % 2 else p, f"class{i}", lengths[p] / SR)
          for i, p in enumerate(sorted(lengths))]
  _manifest(tmp_path / "m.csv", rows)
  source = sources.ManifestSource(str(tmp_path / "m.csv"))
  assert source.files() == sorted(lengths)
  assert source.labels() == ["class0", "class1", "class2", "class3"]
  assert len(_lengths(source)) == 4
  _manifest(tmp_path / "missing.csv", rows[:2] + [("audio/nope.wav", "x", 1.0)])
  with pytest.raises(ValueError, match=r"missing.csv: line 4: file not found: .*nope.wav"):
    sources.ManifestSource(str(tmp_path / "missing.csv"))
  # audax's duration column is not read (lengths come from decoding): any value passes.
  _manifest(tmp_path / "dur.csv", [(rows[0][0], "a", "long")])
  assert sources.ManifestSource(str(tmp_path / "dur.csv")).files() == [rows[0][0]]
  _manifest(tmp_path / "empty.csv", [(rows[0][0], "a", 1.0), ("", "b", 1.0)])
  with pytest.raises(ValueError, match=r"empty.csv: line 3: empty 'files' value"):
    sources.ManifestSource(str(tmp_path / "empty.csv"))
  _manifest(tmp_path / "nofiles.csv", [("x",)], header=("path",))
  with pytest.raises(ValueError, match=r"nofiles.csv: line 1: expected a header with the "
                                       r"column\(s\) \['files'\]"):
    sources.ManifestSource(str(tmp_path / "nofiles.csv"))
  with pytest.raises(ValueError, match=r"ManifestSource.manifest: .* is not a file"):
    sources.ManifestSource(str(tmp_path))


def test_speech_commands_splits_follow_the_lists(tmp_path):
  root = str(tmp_path / "speech_commands_v0.02")
  make_speech_commands_tree(root)
  lists = {}
  for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
    with open(os.path.join(root, name)) as f:
      lists[split] = sorted(os.path.join(root, l.strip()) for l in f if l.strip())
  everything = sources.SpeechCommandsSource(root, "all")
  parts = {s: sources.SpeechCommandsSource(root, s) for s in ("train", "validation", "test")}
  assert sorted(parts["validation"].files()) == lists["validation"]
  assert sorted(parts["test"].files()) == lists["test"]
  assert sorted(sum((p.files() for p in parts.values()), [])) == sorted(everything.files())
  assert not set(parts["train"].files()) & set(lists["validation"] + lists["test"])
  for part in parts.values():
    for path, label in zip(part.files(), part.labels()):
      assert os.path.basename(os.path.dirname(path)) == label and not label.startswith("_")
  assert len(_lengths(parts["train"])) == len(parts["train"])
  with pytest.raises(ValueError, match="validation_list.txt not found"):
    sources.SpeechCommandsSource(str(tmp_path), "train")


def _recording_pools(monkeypatch):
  """The multiprocessing pools make_tfrecords opens from now on (a list, filled as they open)."""
  import multiprocessing  # pylint: disable=import-outside-toplevel
  pools = []
  context = type(multiprocessing.get_context("spawn"))
  make_pool = context.Pool
  monkeypatch.setattr(context, "Pool", lambda self, *a, **k: pools.append(
      make_pool(self, *a, **k)) or pools[-1])
  return pools


@pytest.mark.slow  # spawned workers, then a process of its own
def test_tfrecord_writer_reader_and_resume(tmp_path, monkeypatch, capfd):
  lengths = _write_corpus(str(tmp_path / "audio"), n=8)
  bad = tmp_path / "audio" / "broken.flac"
  bad.write_bytes(b"garbage")
  rows = [(p, "x", "") for p in sorted(lengths)] + [(str(bad), "y", "")]
  _manifest(tmp_path / "m.csv", rows)
  out = str(tmp_path / "records")
  pools = _recording_pools(monkeypatch)
  tfrecord_writer.make_tfrecords(str(tmp_path / "m.csv"), out, 3, workers=2)
  written = capfd.readouterr()
  assert f"skipped bad file {bad}" in written.out
  assert "done: 8 clips in 3 shards, 1 bad files skipped" in written.out
  # The pool's workers were SIGTERMed at the end of every parallel write, some while their
  # interpreter was already shutting down: now and then one printed "Exception ignored in:
  # <module 'threading'> ... AssertionError" after the work was done. They now leave on
  # their own: exit code 0, nothing printed.
  workers = pools[0]._pool  # pylint: disable=protected-access
  assert len(workers) == 2 and [w.exitcode for w in workers] == [0, 0]
  assert "Exception ignored" not in written.err
  source = tfrecord_source.TFRecordSource(os.path.join(out, "shard-*.tfrecord"))
  assert len(source) == 8
  got = _lengths(source)
  # FLAC re-encoding of the ogg clips keeps their decoded length.
  assert len(got) == 8
  np.testing.assert_allclose(got, sorted(lengths.values()), atol=1200)
  # Resume: the missing shard, a truncated one and one damaged in place (same size: zeroed
  # bytes inside, as a bad disk or copy leaves) are written again.
  os.remove(os.path.join(out, tfrecord_format.shard_name(1, 3)))
  truncated = os.path.join(out, tfrecord_format.shard_name(2, 3))
  with open(truncated, "r+b") as f:
    f.truncate(os.path.getsize(truncated) - 10)
  zeroed = os.path.join(out, tfrecord_format.shard_name(0, 3))
  with open(zeroed, "r+b") as f:
    f.seek(os.path.getsize(zeroed) // 2)
    f.write(bytes(64))
  again = subprocess.run([sys.executable, "-m", "cola_tf.data.make_tfrecords", "--manifest",
                          str(tmp_path / "m.csv"), "--out", out, "--shards", "3"],
                         cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                         timeout=600)
  assert again.returncode == 0, again.stderr
  assert "0 already written, 3 to write" in again.stdout, again.stdout
  assert f"{tfrecord_format.shard_name(2, 3)}: " in again.stdout and "writing it again" in again.stdout
  assert f"{tfrecord_format.shard_name(0, 3)}: its content differs" in again.stdout
  assert len(_lengths(tfrecord_source.TFRecordSource(os.path.join(out, "shard-*.tfrecord")))) == 8
  with pytest.raises(ValueError, match="no files match"):
    tfrecord_source.TFRecordSource(str(tmp_path / "nothing-*.tfrecord"))


def test_pair_dataset_from_tfrecords_gives_augmented_batches(tmp_path):
  lengths = _write_corpus(str(tmp_path / "audio"), n=8)
  _manifest(tmp_path / "m.csv", [(p, "", "") for p in sorted(lengths)])
  out = str(tmp_path / "records")
  tfrecord_writer.make_tfrecords(str(tmp_path / "m.csv"), out, 2, workers=1)
  fe = frontend_lib.LogMelFrontend()
  ds = pipeline.pair_dataset(tfrecord_source.TFRecordSource(os.path.join(out, "*.tfrecord")), None, 4,
                             fe, seed=1)
  batch = next(iter(ds))
  assert batch["anchor"].shape == (4, 100, 64) and batch["positive"].shape == (4, 100, 64)
  assert np.all(np.isfinite(batch["anchor"].numpy()))


def test_tfds_source_never_downloads_unasked_and_reads_prepared_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match=r"'speech_commands' is not prepared in .*download = True"):
    tfds_source.TFDSSource("speech_commands", data_dir=str(tmp_path / "tfds"))
  with tfds.testing.mock_data(num_examples=6):
    source = tfds_source.TFDSSource("speech_commands", split="train", data_dir=str(tmp_path / "tfds"),
                                download=True)  # download_and_prepare is mocked: no network
    clips = list(pipeline.decoded_clips(source, SR, shuffle=False))
    assert len(source) == 6
  assert len(clips) == 6
  for clip in clips:
    assert clip.dtype == tf.float32 and clip.shape.rank == 1
    assert float(tf.reduce_max(tf.abs(clip))) <= 1.0


@gin.configurable
class ToneSource(sources.Source):
  """A throwaway source that exists only in this test module, registered through the
  registry alone: the tests over every registered source run on it too."""

  def __init__(self, num_clips=8):
    self.num_clips = num_clips

  def __len__(self):
    return self.num_clips

  def clips(self, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
            deterministic=False, native_only=False, max_seconds=None):
    tones = np.stack([_tone(200 + 40 * i, 2.0, sample_rate) for i in range(self.num_clips)])
    names = [f"tone{i}" for i in range(self.num_clips)]
    ds = tf.data.Dataset.from_tensor_slices((tones, names, [2.0] * self.num_clips))
    return ds.shard(num_shards, shard_index)

  @classmethod
  def example(cls, root):
    return []


sources.register_source(ToneSource)


@pytest.mark.parametrize("name", list(sources.SOURCES))
def test_pretrains_from_every_registered_source(name, tmp_path, clean_gin):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import configuration  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import training  # pylint: disable=import-outside-toplevel
  configuration.parse_gin(["tiny"], sources.SOURCES[name].example(str(tmp_path)) + [
      f"train.source = @{name}()",
      "train.total_steps = 4", "train.global_batch_size = 4", "build_adamw.warmup_steps = 1",
      "train.steps_per_loop = 2", "train.evaluation = None"], None)
  with tfds.testing.mock_data(num_examples=8):
    result = training.train(str(tmp_path / "run"))
  assert result["step"] == 4
  source = gin.query_parameter("train.source").scoped_configurable_fn
  assert isinstance(result["strategy"], tf.distribute.Strategy) and issubclass(source, sources.Source)


@pytest.mark.slow  # a process of its own
def test_make_tfrecords_from_a_gin_configured_source(tmp_path):
  """The source the trainer would read (here tiny.gin's SyntheticSource) written to shards
  by the CLI; a source that is not file-based is refused with one line."""
  out = str(tmp_path / "records")
  base = [sys.executable, "-m", "cola_tf.data.make_tfrecords", "--gin_file", "tiny",
          "--gin_param", "SyntheticSource.num_clips = 6", "--gin_param",
          "SyntheticSource.seconds = 1.0", "--gin_param",
          f"SyntheticSource.cache_dir = '{tmp_path}/cache'", "--shards", "2", "--workers", "1"]
  proc = subprocess.run(base + ["--out", out], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert len(tfrecord_source.TFRecordSource(os.path.join(out, "shard-*.tfrecord"))) == 6
  refused = subprocess.run(base + ["--out", str(tmp_path / "again"), "--gin_param",
                                   "train.source = @TFRecordSource()", "--gin_param",
                                   f"TFRecordSource.pattern = '{out}/shard-*.tfrecord'"],
                           cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                           timeout=600)
  assert refused.returncode == 2
  assert "writes the files of a file-based source" in refused.stderr and "Traceback" not in (
      refused.stdout + refused.stderr)


@pytest.mark.slow  # a process of its own
def test_tf_data_service_runs_the_pipeline_without_python_in_the_graph(tmp_path):
  root = tmp_path / "wavs"
  root.mkdir()
  for i in range(6):
    sf.write(str(root / f"c{i}.wav"), _tone(300 + 50 * i, 2.0), SR, subtype="PCM_16")
  sf.write(str(root / "c_44k.wav"), _tone(300, 2.0, rate=44100), 44100, subtype="PCM_16")
  (root / "broken.wav").write_bytes(b"RIFFxxxx")
  fe = frontend_lib.LogMelFrontend()
  source = sources.FolderSource(str(root))
  local = pipeline.pair_dataset(source, None, 4, fe, seed=0)
  # The local path may fall back to Python (numpy_function); the service path may not.
  assert any("PyFunc" in op for op in graph_ops(local))
  native = pipeline.decoded_clips(source, SR, shuffle=False, native_only=True)
  assert not any("PyFunc" in op for op in graph_ops(native))
  assert len(list(native)) == 6  # the 44.1 kHz and the broken file are dropped
  # The service itself runs in a subprocess ending with os._exit: in-process servers can
  # block in their destructors while a dynamically sharded job is live.
  proc = subprocess.run([sys.executable, "-c", SERVICE_RUN, str(root)], cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "shapes (4, 100, 64) (4, 100, 64)" in proc.stdout, proc.stdout[-2000:]


SERVICE_RUN = r"""
import os, sys
import tensorflow as tf
from cola_tf import frontend
from cola_tf.data import pipeline, sources
service = tf.data.experimental.service
dispatcher = service.DispatchServer()
worker = service.WorkerServer(service.WorkerConfig(
    dispatcher_address=dispatcher.target.split("://")[1]))
ds = pipeline.pair_dataset(sources.FolderSource(sys.argv[1]), None, 4,
                           frontend.LogMelFrontend(), seed=0,
                           data_service_address=dispatcher.target)
batch = next(iter(ds))
print("shapes", tuple(batch["anchor"].shape), tuple(batch["positive"].shape), flush=True)
os._exit(0)
"""


def test_disk_cache(tmp_path):
  lengths = _write_corpus(str(tmp_path / "audio"), n=4)
  fe = frontend_lib.LogMelFrontend()
  ds = pipeline.pair_dataset(sources.FolderSource(str(tmp_path / "audio")), None, 2, fe,
                             cache=str(tmp_path / "cache" / "clips"))
  os.makedirs(tmp_path / "cache")
  it = iter(ds)
  for _ in range(3):  # > one epoch of 4 clips
    next(it)
  assert any(name.startswith("clips") for name in os.listdir(tmp_path / "cache"))
  assert len(lengths) == 4


def test_pair_pipeline_normalises_each_crop_and_adds_noise_to_the_positive_only(tmp_path):
  """The recipe's data path: a clip and the same clip 20 dB quieter give the same anchors;
  the positive differs from the anchor by the noise alone (one-crop clips, no SpecAugment)."""
  crop = int(0.96 * SR)
  for name, gain in (("loud", 1.0), ("quiet", 0.1)):
    os.makedirs(tmp_path / name)
    for i in range(4):
      sf.write(str(tmp_path / name / f"c{i}.wav"), gain * _tone(300 + 100 * i, crop / SR), SR,
               subtype="FLOAT")
  fe = frontend_lib.LogMelFrontend()

  def batch(name, noise):
    ds = pipeline.pair_dataset(sources.FolderSource(str(tmp_path / name)), None, 4, fe, seed=2,
                               spec_augment="none", positive_noise_stddev=noise,
                               short_clips="end_one_crop", deterministic=True, cache=True)
    b = next(iter(ds))
    return b["anchor"].numpy(), b["positive"].numpy()

  loud_a, loud_p = batch("loud", 0.0)
  quiet_a, _ = batch("quiet", 0.0)
  np.testing.assert_array_equal(loud_a, loud_p)
  np.testing.assert_allclose(np.sort(quiet_a.reshape(4, -1), 0), np.sort(loud_a.reshape(4, -1), 0),
                             atol=1e-3)
  noisy_a, noisy_p = batch("loud", 0.001)
  np.testing.assert_array_equal(noisy_a, loud_a)
  assert np.abs(noisy_p - noisy_a).max() > 0.1  # quiet cells move: noise on the positive
  with pytest.raises(ValueError, match="positive_noise_stddev"):
    pipeline.pair_dataset(sources.FolderSource(str(tmp_path / "loud")), None, 4, fe,
                          positive_noise_stddev=-1.0)


def _pairs(folder, n, **kwargs):
  ds = pipeline.pair_dataset(sources.FolderSource(str(folder)), None, n,
                             frontend_lib.LogMelFrontend(), seed=3, spec_augment="none",
                             deterministic=True, **kwargs)
  b = next(iter(ds))
  return b["anchor"].numpy(), b["positive"].numpy()


def test_pair_pipeline_normalises_each_crop_not_the_clip(tmp_path, clean_gin):
  """Crops of one 8 s clip whose level rises 40 dB along it: normalised per crop (the recipe)
  every crop has about the same mean log-mel; normalised per clip, their means would spread
  with the position (measured here as the control, 'l2_clip')."""
  t = np.arange(8 * SR) / SR
  noise = np.random.default_rng(0).standard_normal(t.size)
  os.makedirs(tmp_path / "ramp")
  sf.write(str(tmp_path / "ramp" / "r.wav"), (0.005 * 100.0 ** (t / t[-1]) * noise), SR,
           subtype="FLOAT")
  per_crop, _ = _pairs(tmp_path / "ramp", 32, positive_noise_stddev=0.0)
  gin.bind_parameter("LogMelFrontend.waveform_normalization", "l2_clip")
  per_clip, _ = _pairs(tmp_path / "ramp", 32, positive_noise_stddev=0.0)
  assert np.std(per_crop.mean(axis=(1, 2))) < 0.3
  assert np.std(per_clip.mean(axis=(1, 2))) > 1.0


def test_positive_noise_has_the_recipe_stddev(tmp_path, clean_gin):
  """A silent clip's positive is the noise alone: its log-mel level is that of N(0, 0.001^2)
  through the same frontend (0.002 would be 1.4 higher: log 4)."""
  os.makedirs(tmp_path / "silence")
  sf.write(str(tmp_path / "silence" / "s.wav"), np.zeros(SR, np.float32), SR, subtype="FLOAT")
  _, positive = _pairs(tmp_path / "silence", 8, short_clips="end_one_crop",
                       positive_noise_stddev=pipeline.POSITIVE_NOISE_STDDEV)
  fe = frontend_lib.LogMelFrontend()
  rng = np.random.default_rng(1)
  crop = int(0.96 * SR)

  def level(std):
    return float(np.mean(fe.log_mel(tf.constant(std * rng.standard_normal((8, crop)),
                                                tf.float32)).numpy()))
  assert pipeline.POSITIVE_NOISE_STDDEV == 0.001
  assert abs(positive.mean() - level(0.001)) < 0.05
  assert abs(positive.mean() - level(0.002)) > 1.0


def test_seed_streams_never_overlap_across_hosts_purposes_and_resumes():
  """The old `seed * 1000003 + host + offset` gave host 1's crop stream to host 0's
  shuffle; hashed streams are distinct over seeds (a resume adds its start step), hosts and
  purposes."""
  purposes = ("clips", "crops", "pair shuffle", "noise", "spec augment", "job")
  streams = {pipeline.seed_stream(seed, host, p) for seed in range(20) for host in range(8)
             for p in purposes}
  assert len(streams) == 20 * 8 * len(purposes)
  assert all(0 <= s < 2**63 for s in streams)
  assert pipeline.seed_stream(5, 1, "crops") == pipeline.seed_stream(5, 1, "crops")
