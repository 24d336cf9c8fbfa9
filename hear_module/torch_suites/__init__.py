"""The export as torch modules for torch-based benchmark suites (X-ARES, EVAR, s3prl).

Each adapter keeps the exported SavedModel as the one definition of the features: torch
tensors go to numpy, through `hear_module` (TensorFlow, CPU), and back to torch on the input's
device. They need torch (`pip install 'cola_tf[hear]'`), never train the encoder, and
frames come every 50 ms (the HEAR timestamp embeddings: frame j is centred at j * 50 ms).
  xares_encoder.ColaTFEncoder     X-ARES encoder ([B, T] -> [B, T', D]; check_audio_encoder)
  evar_ar.AR_ColaTF               EVAR audio representation (BaseAudioRepr subclass)
  s3prl_upstream.ColaTFUpstream   s3prl upstream expert (list of wavs -> hidden_states)
The suites' own runners, with what they need here (s3prl_support, xares_support;
torchaudio_compat: torchaudio beside the CPU torch): `python -m
hear_module.torch_suites.s3prl_run` (s3prl's run_downstream with this upstream registered)
and `python -m hear_module.torch_suites.xares_run` (xares.run); Speech Commands tasks for
them: `make_s3prl_data`, `make_xares_task` (task file xares_speech_commands.py).
"""
import numpy as np
import torch

import hear_module


class ExportFrames:
  """A loaded export that embeds torch batches: frames [B, T', D] or scenes [B, D]."""

  def __init__(self, export_dir, fast=False):
    self.model = hear_module.load_model(export_dir, fast=fast)
    self.sample_rate = self.model.sample_rate
    self.output_dim = self.model.timestamp_embedding_size
    self.hop_ms = float(self.model.metadata["timestamp_hop_ms"])
    self.hop_samples = int(round(self.sample_rate * self.hop_ms / 1000))

  @staticmethod
  def _numpy(audio):
    if audio.ndim == 1:
      audio = audio[None]
    return audio.detach().to("cpu", torch.float32).numpy()

  def frames(self, audio):
    """[B, T] (or [T]) torch audio at 16 kHz -> float32 [B, T', D] on audio's device."""
    emb, _ = hear_module.get_timestamp_embeddings(self._numpy(audio), self.model)
    return torch.from_numpy(np.array(emb)).to(audio.device)

  def scenes(self, audio):
    """[B, T] torch audio -> float32 [B, D] scene embeddings on audio's device."""
    emb = hear_module.get_scene_embeddings(self._numpy(audio), self.model)
    return torch.from_numpy(np.array(emb)).to(audio.device)

  def frames_of_lengths(self, lengths, num_frames):
    """Valid frames per clip of `lengths` samples: frame j is valid if j * hop < length
    (at least the first), as a [B, num_frames] bool mask."""
    valid = torch.div(torch.as_tensor(lengths), self.hop_samples, rounding_mode="floor") + 1
    return torch.arange(num_frames)[None, :] < valid.clamp(max=num_frames)[:, None]
