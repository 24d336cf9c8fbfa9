"""The seed's linear-probe protocol in TensorFlow (CLI: `python -m cola_tf.linear_probe`).

  speech_commands  the tasks: keyword (35 / 12 classes) and speaker id, {split: Split}
  embedders        export / log-mel baseline features per split, with a cache
  fit              ProbeSettings and fit_probe: one Dense layer, AdamW, best valid epoch
  reports          results.json, per-class and confusion CSVs, confusion.png
  protocol         ProbeTask and run(): the whole protocol
"""
