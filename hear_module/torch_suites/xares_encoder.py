"""An X-ARES encoder over a cola_tf export.

  COLA_TF_EXPORT=runs/tiny/export python -m hear_module.torch_suites.xares_run \
      hear_module/torch_suites/xares_encoder.py TASK.py ...

(xares_run.py: X-ARES's runner with what it needs here.) X-ARES builds the encoder with no
arguments, so the export folder comes from the COLA_TF_EXPORT environment variable (or the
`export_dir` argument), and COLA_TF_FAST=1 (or `fast=True`) selects the export's fast
embeddings (one encoder pass per clip). It answers both published
forms of X-ARES's encoder check: `encoder(audio)` -> [B, T', D] (xares 0.1.x on PyPI) and
`encoder(audio, attention_mask)` -> ([B, T', D], [B, T'] frame mask or None) (later X-ARES).
"""
import os

import torch

from hear_module.torch_suites import ExportFrames

EXPORT_ENV = "COLA_TF_EXPORT"
FAST_ENV = "COLA_TF_FAST"
_NO_MASK_ARGUMENT = object()


def fast_from_env():
  value = os.environ.get(FAST_ENV, "0")
  if value not in ("0", "1"):
    raise ValueError(f"{FAST_ENV} must be 0 or 1, got {value!r}")
  return value == "1"


class ColaTFEncoder(torch.nn.Module):
  """[B, T] float audio at 16 kHz -> [B, T', D] frame embeddings every 50 ms."""

  def __init__(self, export_dir=None, fast=None):
    super().__init__()
    export_dir = export_dir or os.environ.get(EXPORT_ENV)
    if not export_dir:
      raise ValueError(f"ColaTFEncoder: set {EXPORT_ENV} to a cola_tf export folder (X-ARES "
                       "builds encoders without arguments)")
    self.export = ExportFrames(export_dir, fast=fast_from_env() if fast is None else fast)
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
