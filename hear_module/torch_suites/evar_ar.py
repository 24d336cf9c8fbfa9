"""An EVAR audio representation over a cola_tf export.

EVAR (github.com/nttcslab/eval-audio-repr) finds representations as `evar/ar_*.py` modules:
copy or link this file to `evar/ar_cola_tf.py` and use a config with
`audio_repr: ar_cola_tf.AR_ColaTF`, `weight_file: EXPORT_DIR` (and EVAR's usual sample_rate
16000, unit_samples, ...). `forward` returns the export's scene embeddings (its own pooling:
the mean over half-overlapping 0.96 s windows); `encode_frames` the 50 ms frames as
[B, D, T'], EVAR's frame layout.
"""
from evar.ar_base import BaseAudioRepr  # pylint: disable=import-error  (EVAR's checkout)

from hear_module.torch_suites import ExportFrames


class AR_ColaTF(BaseAudioRepr):  # pylint: disable=invalid-name  (EVAR's naming)

  def __init__(self, cfg):
    super().__init__(cfg=cfg)
    self.export = ExportFrames(cfg.weight_file)

  def encode_frames(self, batch_audio):
    return self.export.frames(batch_audio).transpose(1, 2)

  def forward(self, batch_audio):
    return self.export.scenes(batch_audio)
