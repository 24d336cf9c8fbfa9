r"""Writes a CSV manifest's clips into TFRecord shards for `TFRecordSource` (the command line
is `python -m cola_tf.data.make_tfrecords`).

Each record holds 'audio', 'format', 'name', 'label' and 'duration' (seconds). 'audio' is
the mono 16 kHz clip as raw 16-bit little-endian PCM (pcm16: decoded by a graph with no
Python, the layout for TPU pods and the tf.data service; about 2x FLAC's bytes), as FLAC or
16-bit WAV, or the original bytes (--format copy).

The manifest's rows are shuffled (seeded) before they are dealt to shards, so a sorted
manifest does not give shards (and read windows) of one label. Shards are written in
parallel, each to a temporary file renamed when complete, so an interrupted run resumes by
writing only the shards that are missing or not whole (each shard's size and SHA-256 are
recorded in its `.json` and checked on a rerun: 0.84 s per GB on an AMD EPYC). Every shard's `.json` and `DIR/index.json` record
the identity of the run (hash of the manifest's rows, shard count, format, compression,
seed): a folder written for another manifest or settings is an error, or is cleared and
rewritten with --overwrite. Clips that cannot be decoded are skipped and named.
"""
import hashlib
import io
import json
import multiprocessing
import os
import random
import signal
import sys
import time

import numpy as np
import soundfile as sf

from cola_tf import files
from cola_tf import logs
from cola_tf.data import tfrecord_format
from cola_tf.data.audio import PCM16
from cola_tf import SAMPLE_RATE

FORMATS = (PCM16, "flac", "wav", "copy")
log = logs.logger("make_tfrecords")


def _encode(path, out_format):
  """(bytes, format, duration) for one clip; raises on undecodable input."""
  from cola_tf.data import audio as audio_lib  # pylint: disable=import-outside-toplevel
  with open(path, "rb") as f:
    contents = f.read()
  waveform, _, error = audio_lib.decode_numpy(contents, SAMPLE_RATE)
  if error:
    raise ValueError(error)
  duration = waveform.size / SAMPLE_RATE
  if out_format == "copy":
    return contents, audio_lib.file_format_of(path), duration
  if out_format == PCM16:
    pcm = np.round(np.clip(waveform, -1.0, 32767 / 32768) * 32768).astype("<i2")
    return pcm.tobytes(), PCM16, duration
  buf = io.BytesIO()
  sf.write(buf, waveform, SAMPLE_RATE, format=out_format.upper(), subtype="PCM_16")
  return buf.getvalue(), out_format, duration


def write_shard(job):
  """Writes one shard; returns (index, clips written, [(path, reason)] skipped)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  index, total, rows, out_dir, out_format, compression, identity = job
  final = os.path.join(out_dir, tfrecord_format.shard_name(index, total))
  written, skipped = 0, []
  options = tf.io.TFRecordOptions(compression_type=compression)
  # The shard exists only once complete: its .json first (with the shard's size, which a
  # rerun checks), then the shard itself.
  with files.atomic_output(final) as tmp:
    with tf.io.TFRecordWriter(tmp, options) as w:
      for path, label in rows:
        try:
          data, fmt, duration = _encode(path, out_format)
        except Exception as e:  # pylint: disable=broad-except
          skipped.append((path, f"{type(e).__name__}: {e}"))
          continue
        w.write(tfrecord_format.example(path, label, data, fmt, duration))
        written += 1
    _write_json(final + ".json", {"clips": written, "skipped": skipped,
                                  "bytes": tf.io.gfile.stat(tmp).length,
                                  "sha256": _sha256(tmp), **identity})
  return index, written, skipped


def _sha256(path):
  """The file's SHA-256 (0.84 s per GB here: a rerun checks every shard whole, as a
  same-size damage inside one passes its size check)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    for block in iter(lambda: f.read(8 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _complete(out_dir, name):
  """Whether shard `name` exists whole: its .json's size (or, for shards written before
  sizes were recorded, its record count) matches the file; otherwise a line says why it is
  written again."""
  path = os.path.join(out_dir, name)
  if not os.path.exists(path):
    return False
  try:
    with open(path + ".json") as f:
      meta = json.load(f)
  except (OSError, ValueError):
    log(f"{name}: no readable {name}.json: writing it again")
    return False
  size = os.path.getsize(path)
  if "bytes" in meta and size != meta["bytes"]:
    log(f"{name}: {size} bytes, {meta['bytes']} written (truncated or damaged): writing it again")
    return False
  if "sha256" in meta and _sha256(path) != meta["sha256"]:
    log(f"{name}: its content differs from what was written (damaged in place): writing it "
        "again")
    return False
  if "bytes" not in meta:
    counted = tfrecord_format.count_records([path], meta.get("compression", "ZLIB").replace("NONE", ""))
    if counted[0] != meta.get("clips"):
      log(f"{name}: {counted[0]} records, {meta.get('clips')} written: writing it again")
      return False
  return True


def _write_json(path, value):
  files.atomic_write(path, json.dumps(value, indent=1))


def _identity(rows, shards, out_format, compression, seed):
  """What the shards' contents depend on; a folder written with another identity is stale."""
  digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
  return {"manifest_sha256": digest, "num_shards": shards, "format": out_format,
          "compression": compression or "NONE", "seed": seed}


def _stale(out_dir, identity):
  """Names of existing files in `out_dir` written by a run with another identity."""
  stale = []
  for name in sorted(os.listdir(out_dir)):
    if name.startswith("shard-") and name.endswith(".tfrecord"):
      meta_path = os.path.join(out_dir, name + ".json")
      meta = {}
      if os.path.exists(meta_path):
        with open(meta_path) as f:
          meta = json.load(f)
      if any(meta.get(k) != v for k, v in identity.items()):
        stale.append(name)
  return stale


def _clear(out_dir):
  for name in os.listdir(out_dir):
    if name.startswith("shard-") or name.startswith(tfrecord_format.INDEX):
      os.remove(os.path.join(out_dir, name))


def _rows(source, seed):
  """(path, label) of every file of `source` (a file-based source, or a CSV manifest's path),
  shuffled with `seed`."""
  from cola_tf.data import sources  # pylint: disable=import-outside-toplevel
  if isinstance(source, str):
    source = sources.ManifestSource(source)
  if not isinstance(source, sources.FileListSource):
    raise ValueError(f"make_tfrecords writes the files of a file-based source (one of "
                     f"{', '.join(n for n, c in sources.SOURCES.items() if issubclass(c, sources.FileListSource))}), "
                     f"not {type(source).__name__}")
  rows = list(zip(source.files(), source.labels() or [None] * len(source)))
  random.Random(seed).shuffle(rows)
  return rows


def _check_args(shards, out_format):
  if shards < 1:
    raise ValueError(f"--shards must be >= 1, got {shards}")
  if out_format not in FORMATS:
    raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {out_format!r}")


def make_tfrecords(source, out_dir, shards, out_format=PCM16, compression="ZLIB",
                   workers=None, seed=0, overwrite=False):
  """Writes the clips of `source` (any file-based source: folder, manifest, Speech Commands,
  the synthetic corpus; or a CSV manifest's path) into `shards` TFRecord shards. Returns the
  index dict {'shards': {name: clips}, 'clips': total, 'skipped': [...]}."""
  _check_args(shards, out_format)
  compression = "" if compression in ("NONE", "", None) else compression
  rows = _rows(source, seed)
  identity = _identity(rows, shards, out_format, compression, seed)
  os.makedirs(out_dir, exist_ok=True)
  stale = _stale(out_dir, identity)
  if stale and not overwrite:
    raise ValueError(f"{out_dir} holds {len(stale)} shard(s) (e.g. {stale[0]}) written for "
                     "another manifest or other settings (shards, format, compression, seed); "
                     "pass --overwrite to clear and rewrite the folder, or choose another --out")
  if stale:
    log(f"--overwrite: removing {len(stale)} stale shard(s) in {out_dir}")
    _clear(out_dir)
  jobs = [(i, shards, rows[i::shards], out_dir, out_format, compression, identity)
          for i in range(shards) if not _complete(out_dir, tfrecord_format.shard_name(i, shards))]
  log(f"{len(rows)} clips -> {shards} {out_format} shards in {out_dir}; "
      f"{shards - len(jobs)} already written, {len(jobs)} to write")
  _run_jobs(jobs, shards, workers)
  return _write_index(out_dir, shards, identity)


def _worker_init():
  """Workers ignore Ctrl-C (the terminal sends it to the whole group: the parent stops them)
  and leave on SIGTERM through SystemExit, so a shard in progress removes its temporary file
  and no worker prints a traceback."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))


def _run_jobs(jobs, shards, workers):
  if not jobs:
    return
  workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
  if workers == 1:  # here: a worker process would start TensorFlow again (~5 s) for nothing
    _log_shards(map(write_shard, jobs), len(jobs), shards)
    return
  ctx = multiprocessing.get_context("spawn")  # TF is not fork-safe
  with ctx.Pool(workers, initializer=_worker_init) as pool:
    _log_shards(pool.imap_unordered(write_shard, jobs), len(jobs), shards)
    # Workers leave on their own: the with's terminate() would SIGTERM workers already
    # exiting, and their handler's SystemExit then broke into their interpreter's shutdown
    # ("Exception ignored in: <module 'threading'>", or in an atexit callback).
    pool.close()
    pool.join()


def _log_shards(results, count, shards):
  """A line per shard written (with the files it skipped) as `results` come in."""
  started = time.time()
  for done, (index, written, skipped) in enumerate(results, 1):
    elapsed = time.time() - started
    eta = elapsed / done * (count - done)
    log(f"[{done}/{count}] {tfrecord_format.shard_name(index, shards)}: {written} clips, "
        f"{len(skipped)} skipped | {elapsed:.0f}s elapsed, ETA {eta:.0f}s")
    for path, reason in skipped:
      log(f"  skipped bad file {path}: {reason}")


def _write_index(out_dir, shards, identity):
  index = {"shards": {}, "clips": 0, "skipped": [], **identity}
  for i in range(shards):
    with open(os.path.join(out_dir, tfrecord_format.shard_name(i, shards) + ".json")) as f:
      meta = json.load(f)
    index["shards"][tfrecord_format.shard_name(i, shards)] = meta["clips"]
    index["clips"] += meta["clips"]
    index["skipped"] += [p for p, _ in meta["skipped"]]
  _write_json(os.path.join(out_dir, tfrecord_format.INDEX), index)
  log(f"done: {index['clips']} clips in {shards} shards, "
      f"{len(index['skipped'])} bad files skipped")
  return index
