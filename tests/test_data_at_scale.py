"""Data at pod scale: pcm16 records decoded without Python, tf.data service without duplicated
streams, truncated shards skipped and named, make_tfrecords' shuffle and stale-shard checks,
record counting without an index, and bounded decoding of long clips."""
import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from cola_tf import frontend as frontend_lib
from cola_tf.data import audio
from cola_tf.data import tfrecord_format
from cola_tf.data import tfrecord_writer
from cola_tf.data import pipeline
from cola_tf.data import tfrecord_source
from conftest import REPO, graph_ops, subprocess_env

SR = 16000


def _corpus(root, n=8, seconds=2.0, labels=("a", "b")):
  """n noise clips of distinct lengths in a sorted manifest (label blocks); returns
  (manifest path, {path: samples})."""
  os.makedirs(root, exist_ok=True)
  clips, rows = {}, []
  for i in range(n):
    path = os.path.join(root, f"clip{i:03d}.wav")
    x = np.random.default_rng(i).uniform(-0.5, 0.5, int(seconds * SR) + 160 * i)
    sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
    clips[path] = sf.read(path, dtype="float32")[0]
    rows.append((path, labels[i * len(labels) // n]))
  manifest = os.path.join(root, "m.csv")
  with open(manifest, "w", newline="") as f:
    csv.writer(f).writerows([("files", "labels")] + rows)
  return manifest, clips


def test_pcm16_records_are_exact_and_read_by_a_graph_without_python(tmp_path):
  manifest, clips = _corpus(str(tmp_path / "audio"))
  out = str(tmp_path / "rec")
  tfrecord_writer.make_tfrecords(manifest, out, 2, "pcm16", workers=1)
  source = tfrecord_source.TFRecordSource(os.path.join(out, "shard-*.tfrecord"))
  assert source.record_format == "pcm16" and len(source) == 8
  decoded = source.clips(SR, shuffle=False, deterministic=True)
  got = {n.numpy().decode(): w.numpy() for w, n, _ in decoded}
  assert sorted(got) == sorted(clips)
  for path, want in clips.items():
    np.testing.assert_array_equal(got[path], want)  # 16-bit samples: bit exact
  assert not any("PyFunc" in op for op in graph_ops(decoded))
  pairs = pipeline.pair_dataset(source, None, 4, frontend_lib.LogMelFrontend(), seed=0)
  assert not any("PyFunc" in op for op in graph_ops(pairs))
  assert next(iter(pairs))["anchor"].shape == (4, 100, 64)
  # The FLAC layout still reads, through libsndfile.
  tfrecord_writer.make_tfrecords(manifest, str(tmp_path / "flac"), 2, "flac", workers=1)
  flac = tfrecord_source.TFRecordSource(str(tmp_path / "flac" / "shard-*.tfrecord"))
  assert flac.record_format == "flac" and len(list(flac.waveforms(SR))) == 8
  assert any("PyFunc" in op for op in graph_ops(flac.waveforms(SR)))


def test_pcm16_window_is_a_slice_of_the_clip_and_bad_bytes_are_flagged():
  x = np.arange(-20000, 20000, 7, dtype=np.int16)
  seconds = 1000 / SR
  for seed in range(3):
    window, ok, full = audio.decode_pcm16(tf.constant(x.astype("<i2").tobytes()), "x",
                                          seconds, tf.constant([seed, 0], tf.int64))
    w = np.round(window.numpy() * 32768).astype(np.int16)
    assert bool(ok) and w.size == 1000 and abs(float(full) - x.size / SR) < 1e-6
    start = int(np.flatnonzero(x == w[0])[0])
    np.testing.assert_array_equal(w, x[start:start + 1000])
  _, ok, _ = audio.decode_pcm16(tf.constant(b"abc"), "odd", None, tf.constant([0, 0], tf.int64))
  assert not bool(ok)


# In a subprocess that ends with os._exit: stopping in-process tf.data service servers while
# a dynamically sharded job is still running can block in their destructors.
SERVICE_RUN = r"""
import os, sys
import numpy as np
import tensorflow as tf
from cola_tf import frontend
from cola_tf.data import pipeline, tfrecord_source
source = tfrecord_source.TFRecordSource(sys.argv[1])
service = tf.data.experimental.service
dispatcher = service.DispatchServer()
address = dispatcher.target.split("://")[1]
workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address))
           for _ in range(2)]
ds = pipeline.pair_dataset(source, None, 8, frontend.LogMelFrontend(), seed=0,
                           pair_shuffle_buffer=1, data_service_address=dispatcher.target)
pairs = [(a.tobytes() + p.tobytes()) for b in ds.take(32)
         for a, p in zip(b["anchor"].numpy(), b["positive"].numpy())]
print("pairs", len(pairs), "distinct", len(set(pairs)), flush=True)
os._exit(0)
"""


@pytest.mark.slow  # a process of its own
def test_tf_data_service_workers_do_not_repeat_each_other(tmp_path):
  manifest, _ = _corpus(str(tmp_path / "audio"), n=16)
  out = str(tmp_path / "rec")
  tfrecord_writer.make_tfrecords(manifest, out, 4, "pcm16", workers=1)
  proc = subprocess.run([sys.executable, "-c", SERVICE_RUN,
                         os.path.join(out, "shard-*.tfrecord")], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Two workers on one stream give each pair twice (with ShardingPolicy.OFF and fixed seeds:
  # 157 of 256 distinct). An anchor crop may recur by chance; anchor and positive with its
  # noise may not.
  assert "pairs 256 distinct 256" in proc.stdout, proc.stdout[-2000:]


def test_a_truncated_shard_is_skipped_named_and_counted(tmp_path, capfd):
  manifest, _ = _corpus(str(tmp_path / "audio"), n=12)
  out = str(tmp_path / "rec")
  tfrecord_writer.make_tfrecords(manifest, out, 2, "pcm16", workers=1)
  shard = os.path.join(out, tfrecord_format.shard_name(0, 2))
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) // 2)
  source = tfrecord_source.TFRecordSource(os.path.join(out, "shard-*.tfrecord"))
  assert len(source) == 12  # from index.json
  got = len(list(source.waveforms(SR, shuffle=False)))
  assert 6 <= got < 12
  err = capfd.readouterr().err
  assert shard in err and f"ended after {got - 6} of 6 records" in err
  assert f"skipped {12 - got} records" in err
  # Without index.json the records are counted (in parallel), the shard named at once.
  os.remove(os.path.join(out, "index.json"))
  audio.BAD_FILES.reset()
  counted = tfrecord_source.TFRecordSource(os.path.join(out, "shard-*.tfrecord"))
  assert len(counted) == got
  assert "counting the records of 2 TFRecord shard(s)" in capfd.readouterr().out
  assert audio.BAD_FILES.names() == [shard]


@pytest.mark.slow  # a process of its own
def test_make_tfrecords_shuffles_rows_and_refuses_stale_shards(tmp_path):
  manifest, clips = _corpus(str(tmp_path / "audio"), n=16, seconds=0.5, labels="abcd")
  out = str(tmp_path / "rec")
  tfrecord_writer.make_tfrecords(manifest, out, 1, "pcm16", workers=1)
  labels = [l.numpy().decode() for l in tf.data.TFRecordDataset(
      os.path.join(out, tfrecord_format.shard_name(0, 1)), "ZLIB").map(
          lambda r: tf.io.parse_single_example(r, tfrecord_format.FEATURES)["label"])]
  assert sorted(labels) == sorted("aaaabbbbccccdddd")
  assert labels != sorted(labels)  # a sorted manifest is not kept in order
  with open(os.path.join(out, "index.json")) as f:
    index = json.load(f)
  assert index["num_shards"] == 1 and len(index["manifest_sha256"]) == 64
  # Another shard count into the same folder: refused, named.
  with pytest.raises(ValueError, match=r"written for another manifest or other settings"):
    tfrecord_writer.make_tfrecords(manifest, out, 2, "pcm16", workers=1)
  # The manifest grew: refused without --overwrite; the CLI rewrites with it.
  more, _ = _corpus(str(tmp_path / "more"), n=4, seconds=0.5)
  with open(manifest, "a") as f:
    f.write("".join(line for line in open(more).readlines()[1:]))
  cli = [sys.executable, "-m", "cola_tf.data.make_tfrecords", "--manifest", manifest, "--out",
         out, "--shards", "2", "--workers", "1"]
  refused = subprocess.run(cli, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                           timeout=300)
  assert refused.returncode == 2 and "pass --overwrite" in refused.stderr
  done = subprocess.run(cli + ["--overwrite"], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert "removing 1 stale shard(s)" in done.stdout
  assert sorted(os.listdir(out)) == sorted(
      [tfrecord_format.shard_name(i, 2) + s for i in range(2) for s in ("", ".json")]
      + ["index.json"])
  assert len(tfrecord_source.TFRecordSource(os.path.join(out, "shard-*.tfrecord"))) == 20
  # A shard that index.json does not list (left by another run) is refused by the reader.
  with open(os.path.join(out, "shard-00000-of-00009.tfrecord"), "wb"):
    pass
  with pytest.raises(ValueError, match="does not list 1 matched shard"):
    tfrecord_source.TFRecordSource(os.path.join(out, "shard-*.tfrecord"))


def _sigterm_after_the_first_shard(cli, out):
  proc = subprocess.Popen(cli, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    for line in proc.stdout:
      if "[1/" in line:
        break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 143, err
  assert "stopped by SIGTERM" in err and "Traceback" not in err, err
  left = os.listdir(out)
  assert not [n for n in left if ".tmp-" in n], left  # no half-written shard
  assert "index.json" not in left
  return len([n for n in left if n.endswith(".tfrecord")])


@pytest.mark.slow  # a process of its own
def test_sigterm_to_make_tfrecords_keeps_whole_shards_and_the_rerun_finishes(tmp_path):
  """Writing in the process itself (--workers 1): SIGTERM stops it keeping whole shards
  only; the rerun writes the rest."""
  manifest, _ = _corpus(str(tmp_path / "audio"), n=24, seconds=0.5)
  out = str(tmp_path / "rec")
  cli = [sys.executable, "-m", "cola_tf.data.make_tfrecords", "--manifest", manifest, "--out",
         out, "--shards", "24", "--workers", "1"]
  assert _sigterm_after_the_first_shard(cli, out) < 24
  done = subprocess.run(cli, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr
  assert len(tfrecord_source.TFRecordSource(os.path.join(out, "shard-*.tfrecord"))) == 24


# Ends with os._exit, as cola_tf.train does: an input pipeline with Python ops in flight can
# hang interpreter shutdown.
LONG_RUN = r"""
import os, resource, sys
from cola_tf import frontend
from cola_tf.data import pipeline, sources
source = sources.FolderSource(sys.argv[1])
max_seconds = None if sys.argv[2] == "none" else float(sys.argv[2])
ds = pipeline.pair_dataset(source, None, 4, frontend.LogMelFrontend(), seed=0,
                           max_clip_seconds=max_seconds, pair_shuffle_buffer=1)
it = iter(ds)
for _ in range(12):
  next(it)
print("maxrss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, flush=True)
os._exit(0)
"""


def _peak_rss_mb(folder, max_seconds):
  proc = subprocess.run([sys.executable, "-c", LONG_RUN, folder, max_seconds], cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return int(proc.stdout.split("maxrss_mb")[1].split()[0]), proc.stdout


@pytest.mark.slow  # a process of its own
def test_a_three_hour_file_is_read_as_a_bounded_window_and_named_once(tmp_path):
  short = tmp_path / "short"
  _corpus(str(short), n=4)
  baseline, _ = _peak_rss_mb(str(short), "30")
  long_path = str(short / "three_hours.wav")
  rng = np.random.default_rng(0)
  with sf.SoundFile(long_path, "w", SR, 1, subtype="PCM_16") as f:
    for _ in range(3 * 60):  # one minute at a time: the test itself stays small
      f.write(rng.uniform(-0.3, 0.3, 60 * SR).astype(np.float32))
  peak, out = _peak_rss_mb(str(short), "30")
  # A whole 3-hour clip is 345 MB as 16-bit bytes and 691 MB as float32.
  assert peak - baseline < 150, (baseline, peak)
  assert out.count("long clip") == 1 and "three_hours.wav" in out and "10800 s" in out
