r"""The seed's linear-probe protocol in TensorFlow: frozen encoder, one Dense layer, AdamW.

  python -m cola_tf.linear_probe --export EXPORT_DIR --data SC_V002_ROOT [--classes 35|12]
      [--task keyword|speaker] [--output DIR] [--embedding clip|scene] [--augment none|crop]
  python -m cola_tf.linear_probe --baseline logmel_stats --data SC_V002_ROOT ...

The defaults are audax's Speech Commands probe (`recipes/cola/configs/supervised/
speechcommandsv2/convnext_tiny_sc_ft.py`, as it ran for the published rows):
* each clip decoded (mono float32, 16 kHz) and centre-cropped or centre-padded with zeros to
  `--clip_seconds` 1.0 s, then fed whole through the export's `clip_embeddings`: waveform
  normalisation, one log-mel of 104 frames, the frozen encoder, pooling (`--embedding
  scene` uses the HEAR scene embedding, the mean over 0.96 s windows, instead);
* one Dense layer on the raw features (`--standardize` first standardises them with the
  train split's mean and std), softmax cross-entropy;
* AdamW, weight decay 0, batch 512, 50 epochs, peak learning rate 1e-3 x batch / 256
  (audax scales every learning rate so; `--reference_batch 0` turns that off), linear
  warmup over 5 epochs then cosine decay to 0;
* the epoch with the best validation accuracy (the later one on a tie) is kept and reported
  on test.
`--augment crop` instead re-embeds a random 0.96 s window of every train clip each epoch
(slower: the encoder runs every epoch); validation and test stay fixed.
`--encoder_mode training` runs the encoder as audax's probe step does (`train` left True):
each epoch the train clips are embedded with batch statistics and drop path, moving the
BatchNorm running statistics that validation and test then use (EfficientNet's probe in
audax; needs an export with `clip_embeddings_training`). The default, `inference`, keeps
the exported encoder frozen, statistics included.

Tasks on a Speech Commands v0.02 tree (the real archive or one laid out like it):
* keyword, 35 classes: every word; splits from validation_list.txt / testing_list.txt
  (speaker-disjoint). 12 classes: HEAR's ten words + `_unknown_` + `_silence_` (1 s cuts of
  `_background_noise_`, dealt out to the splits as cola_tf.prepare_speech_commands does).
* speaker: speaker identity (the `<speaker>` of `<speaker>_nohash_<n>.wav`) over speakers
  with at least --min_speaker_clips clips; the clips of each speaker are split 80/10/10 into
  train/valid/test by a hash of their path, so splits share speakers but no clip.

Writes OUTPUT/results.json (top-1, best epoch, per-epoch history, per-class accuracy),
per_class.csv, confusion.csv (rows: true class, columns: predicted) and confusion.png.
`--baseline logmel_stats` probes the mean and std over time of each log-mel bin (the same
waveform normalisation and frontend) instead of an encoder.
"""
import argparse
import os
import sys

from cola_tf.runtime import distribute
from cola_tf.probe import embedders
from cola_tf.probe import fit
from cola_tf.probe import protocol
from cola_tf.probe import speech_commands
from cola_tf import logs


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  what = p.add_mutually_exclusive_group(required=True)
  what.add_argument("--export", help="a cola_tf export (SavedModel folder)")
  what.add_argument("--baseline", choices=embedders.BASELINES, help="probe a baseline instead")
  p.add_argument("--data", required=True, help="Speech Commands v0.02 root")
  p.add_argument("--task", default="keyword", choices=speech_commands.TASKS)
  p.add_argument("--classes", type=int, default=35, choices=[12, 35],
                 help="keyword task: 35 words (the seed's protocol) or HEAR's 12")
  p.add_argument("--output", help="report folder (default EXPORT/linear_probe-TASK)")
  p.add_argument("--embedding", default="clip", choices=embedders.EMBEDDINGS,
                 help="clip: the whole clip as one input (the seed's); scene: HEAR's mean over "
                      "0.96 s windows")
  defaults = fit.ProbeSettings()
  p.add_argument("--epochs", type=int, default=defaults.epochs)
  p.add_argument("--batch_size", type=int, default=defaults.batch_size)
  p.add_argument("--learning_rate", type=float, default=defaults.learning_rate,
                 help="base LR; the peak is LR x batch / --reference_batch")
  p.add_argument("--reference_batch", type=int, default=defaults.reference_batch,
                 help="0: the learning rate is the peak as given")
  p.add_argument("--warmup_epochs", type=float, default=defaults.warmup_epochs)
  p.add_argument("--weight_decay", type=float, default=defaults.weight_decay)
  p.add_argument("--standardize", action="store_true",
                 help="standardise features with the train split's mean and std first")
  p.add_argument("--seed", type=int, default=defaults.seed)
  p.add_argument("--augment", default="none", choices=protocol.AUGMENTS)
  p.add_argument("--encoder_mode", default="inference", choices=protocol.ENCODER_MODES,
                 help="training: audax's probe (batch statistics, drop path, BatchNorm "
                      "statistics updated on the probe's data)")
  p.add_argument("--clip_seconds", type=float, default=1.0)
  p.add_argument("--min_speaker_clips", type=int, default=10)
  a = p.parse_args(argv)
  suffix = f"{a.task}{a.classes}" if a.task == "keyword" else a.task
  output = a.output or (os.path.join(a.export, f"linear_probe-{suffix}") if a.export
                        else f"linear_probe-{a.baseline}-{suffix}")
  settings = fit.ProbeSettings(a.epochs, a.batch_size, a.learning_rate, a.reference_batch,
                               a.warmup_epochs, a.weight_decay, a.standardize, a.seed,
                               a.augment, a.encoder_mode)
  try:
    fit.check_settings(settings)
    embedder = (embedders.ExportEmbedder(a.export, a.embedding) if a.export
                else embedders.LogMelStatsEmbedder())
    task = protocol.ProbeTask(a.data, a.task, a.classes, a.clip_seconds, a.min_speaker_clips)
    protocol.run(embedder, task, settings, output)
  except ValueError as e:
    protocol.log(f"error: {e}", error=True)
    return 2
  return 0


if __name__ == "__main__":
  distribute.initialise_devices_quietly()
  sys.exit(main())
