r"""Writes a CSV manifest's clips into TFRecord shards for `TFRecordSource`.

  python -m cola_tf.data.make_tfrecords --manifest m.csv --out DIR --shards N \
      [--format flac|wav|copy] [--compression ZLIB|GZIP|NONE] [--workers K]

Each record holds 'audio' (encoded bytes: FLAC or 16-bit WAV of the mono 16 kHz clip, or the
original bytes with --format copy), 'format', 'name', 'label' and 'duration' (seconds).
Shards are written in parallel, each to a temporary file renamed when complete, so an
interrupted run resumes by writing only the shards that are missing. Clips that cannot be
decoded are skipped and named. `DIR/index.json` records the clips per shard.
"""
import argparse
import io
import json
import multiprocessing
import os
import sys
import time

import soundfile as sf

SAMPLE_RATE = 16000


def shard_name(index, total):
  return f"shard-{index:05d}-of-{total:05d}.tfrecord"


def _encode(path, out_format):
  """(bytes, format, duration) for one clip; raises on undecodable input."""
  from cola_tf.data import audio as audio_lib  # pylint: disable=import-outside-toplevel
  with open(path, "rb") as f:
    contents = f.read()
  waveform, error = audio_lib.decode_numpy(contents, SAMPLE_RATE)
  if error:
    raise ValueError(error)
  duration = waveform.size / SAMPLE_RATE
  if out_format == "copy":
    return contents, audio_lib.file_format_of(path), duration
  buf = io.BytesIO()
  sf.write(buf, waveform, SAMPLE_RATE, format=out_format.upper(), subtype="PCM_16")
  return buf.getvalue(), out_format, duration


def write_shard(job):
  """Writes one shard; returns (index, clips written, [(path, reason)] skipped)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  index, total, rows, out_dir, out_format, compression = job
  final = os.path.join(out_dir, shard_name(index, total))
  tmp = final + ".tmp"
  written, skipped = 0, []
  options = tf.io.TFRecordOptions(compression_type=compression)
  with tf.io.TFRecordWriter(tmp, options) as writer:
    for path, label in rows:
      try:
        data, fmt, duration = _encode(path, out_format)
      except Exception as e:  # pylint: disable=broad-except
        skipped.append((path, f"{type(e).__name__}: {e}"))
        continue
      feature = {
          "audio": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
          "format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[fmt.encode()])),
          "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[path.encode()])),
          "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[(label or "").encode()])),
          "duration": tf.train.Feature(float_list=tf.train.FloatList(value=[duration])),
      }
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                   .SerializeToString())
      written += 1
  with open(final + ".json.tmp", "w") as f:
    json.dump({"clips": written, "skipped": skipped}, f)
  os.replace(final + ".json.tmp", final + ".json")
  os.replace(tmp, final)  # the shard exists only once complete
  return index, written, skipped


def make_tfrecords(manifest, out_dir, shards, out_format="flac", compression="ZLIB",
                   workers=None):
  """Returns the index dict {'shards': {name: clips}, 'clips': total, 'skipped': [...]}."""
  from cola_tf.data import sources  # pylint: disable=import-outside-toplevel
  if shards < 1:
    raise ValueError(f"--shards must be >= 1, got {shards}")
  if out_format not in ("flac", "wav", "copy"):
    raise ValueError(f"--format must be flac, wav or copy, got {out_format!r}")
  compression = "" if compression in ("NONE", "", None) else compression
  source = sources.ManifestSource(manifest)
  files, labels = source.files(), source.labels() or [None] * len(source)
  rows = list(zip(files, labels))
  os.makedirs(out_dir, exist_ok=True)
  jobs = []
  for i in range(shards):
    if not os.path.exists(os.path.join(out_dir, shard_name(i, shards))):
      jobs.append((i, shards, rows[i::shards], out_dir, out_format, compression))
  print(f"[make_tfrecords] {len(rows)} clips -> {shards} shards in {out_dir}; "
        f"{shards - len(jobs)} already written, {len(jobs)} to write", flush=True)
  started = time.time()
  workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
  done = 0
  if jobs:
    ctx = multiprocessing.get_context("spawn")  # TF is not fork-safe
    with ctx.Pool(workers) as pool:
      for index, written, skipped in pool.imap_unordered(write_shard, jobs):
        done += 1
        elapsed = time.time() - started
        eta = elapsed / done * (len(jobs) - done)
        print(f"[make_tfrecords] [{done}/{len(jobs)}] {shard_name(index, shards)}: {written} "
              f"clips, {len(skipped)} skipped | {elapsed:.0f}s elapsed, ETA {eta:.0f}s",
              flush=True)
        for path, reason in skipped:
          print(f"[make_tfrecords]   skipped bad file {path}: {reason}", flush=True)
  index = {"shards": {}, "clips": 0, "skipped": [], "compression": compression or "NONE",
           "format": out_format}
  for i in range(shards):
    with open(os.path.join(out_dir, shard_name(i, shards) + ".json")) as f:
      meta = json.load(f)
    index["shards"][shard_name(i, shards)] = meta["clips"]
    index["clips"] += meta["clips"]
    index["skipped"] += [p for p, _ in meta["skipped"]]
  tmp = os.path.join(out_dir, "index.json.tmp")
  with open(tmp, "w") as f:
    json.dump(index, f, indent=1)
  os.replace(tmp, os.path.join(out_dir, "index.json"))
  print(f"[make_tfrecords] done: {index['clips']} clips in {shards} shards, "
        f"{len(index['skipped'])} bad files skipped", flush=True)
  return index


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--manifest", required=True, help="CSV with a 'files' column")
  p.add_argument("--out", required=True, help="output folder for the shards")
  p.add_argument("--shards", type=int, required=True)
  p.add_argument("--format", default="flac", choices=["flac", "wav", "copy"])
  p.add_argument("--compression", default="ZLIB", choices=["ZLIB", "GZIP", "NONE"])
  p.add_argument("--workers", type=int, default=None)
  a = p.parse_args(argv)
  try:
    make_tfrecords(a.manifest, a.out, a.shards, a.format, a.compression, a.workers)
  except ValueError as e:
    print(f"[make_tfrecords] error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
