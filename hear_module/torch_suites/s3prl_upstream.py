"""An s3prl upstream expert over a cola_tf export.

s3prl upstreams take a list of 1-D 16 kHz waveforms and return a dict whose
"hidden_states" is a list of [B, T', D] tensors. Register it like s3prl's own upstreams
(`s3prl/upstream/cola_tf/expert.py` importing this class as `UpstreamExpert`, and a hubconf
entry `def cola_tf(ckpt, *args, **kwargs): return _UpstreamExpert(ckpt, *args, **kwargs)`),
then `-u cola_tf -k EXPORT_DIR`. Shorter waveforms are zero-padded to the longest: their
frames past their own end see padding, as s3prl's padded batches do.
"""
import torch

from hear_module.torch_suites import ExportFrames


class ColaTFUpstream(torch.nn.Module):
  """s3prl's UpstreamExpert interface: __init__(ckpt, **kwargs), get_downsample_rates,
  forward(wavs) -> {"hidden_states": [...], "last_hidden_state": ...}."""

  def __init__(self, ckpt, model_config=None, **kwargs):  # pylint: disable=unused-argument
    super().__init__()
    self.export = ExportFrames(ckpt)

  def get_downsample_rates(self, key: str) -> int:  # pylint: disable=unused-argument
    return self.export.hop_samples

  def forward(self, wavs):
    longest = max(int(w.shape[-1]) for w in wavs)
    padded = torch.stack([torch.nn.functional.pad(w.float(), (0, longest - w.shape[-1]))
                          for w in wavs])
    frames = self.export.frames(padded)
    return {"hidden_states": [frames], "last_hidden_state": frames}
