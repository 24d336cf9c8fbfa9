"""An X-ARES encoder over a cola_tf export.

  COLA_TF_EXPORT=runs/tiny/export python -m xares.run \
      $(python -c "import hear_module.torch_suites.xares_encoder as m; print(m.__file__)") \
      src/tasks/*.py

X-ARES builds the encoder with no arguments, so the export folder comes from the
COLA_TF_EXPORT environment variable (or the `export_dir` argument). It answers both published
forms of X-ARES's encoder check: `encoder(audio)` -> [B, T', D] (xares 0.1.x on PyPI) and
`encoder(audio, attention_mask)` -> ([B, T', D], [B, T'] frame mask or None) (later X-ARES).
"""
import os

import torch

from hear_module.torch_suites import ExportFrames

EXPORT_ENV = "COLA_TF_EXPORT"
_NO_MASK_ARGUMENT = object()


class ColaTFEncoder(torch.nn.Module):
  """[B, T] float audio at 16 kHz -> [B, T', D] frame embeddings every 50 ms."""

  def __init__(self, export_dir=None):
    super().__init__()
    export_dir = export_dir or os.environ.get(EXPORT_ENV)
    if not export_dir:
      raise ValueError(f"ColaTFEncoder: set {EXPORT_ENV} to a cola_tf export folder (X-ARES "
                       "builds encoders without arguments)")
    self.export = ExportFrames(export_dir)
    self.sampling_rate = self.export.sample_rate
    self.output_dim = self.export.output_dim
    self.hop_size_in_ms = self.export.hop_ms
    # Later X-ARES reads the device from the first parameter; the encoder has none in torch.
    self.device_anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)

  def forward(self, audio, attention_mask=_NO_MASK_ARGUMENT):
    frames = self.export.frames(audio)
    if attention_mask is _NO_MASK_ARGUMENT:
      return frames
    if attention_mask is None:
      return frames, None
    lengths = attention_mask.to("cpu").long().sum(dim=-1)
    return frames, self.export.frames_of_lengths(lengths, frames.shape[1]).to(audio.device)
