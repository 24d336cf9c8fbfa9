"""An s3prl upstream expert over a cola_tf export.

s3prl upstreams take a list of 1-D 16 kHz waveforms and return a dict whose
"hidden_states" is a list of [B, T', D] tensors. `python -m hear_module.torch_suites.s3prl_run
-u cola_tf -k EXPORT_DIR [-g fast] ...` runs s3prl's own downstream runner with it registered
(s3prl_run.py); inside an s3prl checkout it can also be registered as s3prl's own upstreams
are (`s3prl/upstream/cola_tf/expert.py` importing this class as `UpstreamExpert`, and a
hubconf entry `def cola_tf(ckpt, *args, **kwargs): return _UpstreamExpert(ckpt, *args,
**kwargs)`). `-g fast` (s3prl's upstream model config) uses the export's fast embeddings.
Shorter waveforms are zero-padded to the longest: their frames past their own end see
padding, as s3prl's padded batches do.
"""
import torch

from hear_module.torch_suites import ExportFrames


class ColaTFUpstream(torch.nn.Module):
  """s3prl's UpstreamExpert interface: __init__(ckpt, **kwargs), get_downsample_rates,
  forward(wavs) -> {"hidden_states": [...], "last_hidden_state": ...}."""

  def __init__(self, ckpt, model_config=None, **kwargs):  # pylint: disable=unused-argument
    super().__init__()
    if model_config not in (None, "", "fast"):
      raise ValueError(f"ColaTFUpstream: model_config (-g) must be empty or 'fast', got "
                       f"{model_config!r}")
    self.export = ExportFrames(ckpt, fast=model_config == "fast")

  def get_downsample_rates(self, key: str) -> int:  # pylint: disable=unused-argument
    return self.export.hop_samples

  def forward(self, wavs):
    longest = max(int(w.shape[-1]) for w in wavs)
    padded = torch.stack([torch.nn.functional.pad(w.float(), (0, longest - w.shape[-1]))
                          for w in wavs])
    frames = self.export.frames(padded)
    return {"hidden_states": [frames], "last_hidden_state": frames}
