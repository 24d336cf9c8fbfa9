"""Torch-suite adapters over the export: X-ARES's own encoder check, and the EVAR / s3prl
interfaces (those suites cannot be installed here: checked against their documented API)."""
import importlib
import sys
import types
import warnings

import numpy as np
import pytest
import torch

import hear_module
from hear_module.torch_suites import s3prl_upstream, xares_encoder


@pytest.fixture(scope="module")
def export_dir(tiny_run):
  return tiny_run[1]


def _audio(batch, samples, seed=0):
  return torch.from_numpy(np.random.default_rng(seed).uniform(-0.5, 0.5, (batch, samples))
                          .astype(np.float32))


def test_xares_encoder_passes_xares_check(export_dir, monkeypatch):
  from xares.audio_encoder_checker import check_audio_encoder  # xares 0.1.3 (PyPI)
  monkeypatch.setenv(xares_encoder.EXPORT_ENV, export_dir)
  encoder = xares_encoder.ColaTFEncoder()  # X-ARES builds it without arguments
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", hear_module.AudioRangeWarning)  # randn audio is loud
    assert check_audio_encoder(encoder) is True
  assert encoder.output_dim == 192 and encoder.sampling_rate == 16000
  assert encoder.hop_size_in_ms == 50.0


def test_xares_encoder_frames_equal_hear_timestamp_embeddings(export_dir):
  encoder = xares_encoder.ColaTFEncoder(export_dir)
  audio = _audio(2, 20000)
  frames = encoder(audio)
  model = hear_module.load_model(export_dir)
  expected, timestamps = hear_module.get_timestamp_embeddings(audio.numpy(), model)
  np.testing.assert_allclose(frames.numpy(), np.asarray(expected), rtol=0, atol=0)
  assert frames.shape == (2, 20000 // 800 + 1, 192) and float(timestamps[0, 1]) == 50.0
  # Later X-ARES: (audio, attention_mask) -> (frames, frame mask).
  mask = torch.zeros(2, 20000, dtype=torch.bool)
  mask[0, :] = True
  mask[1, :8000] = True
  same, frame_mask = encoder(audio, mask)
  assert torch.equal(same, frames)
  assert frame_mask.shape == (2, 26) and frame_mask[0].all()
  assert int(frame_mask[1].sum()) == 8000 // 800 + 1
  assert encoder(audio, None)[1] is None
  assert len(list(encoder.parameters())) == 1  # the device anchor X-ARES reads


def test_xares_encoder_needs_an_export(monkeypatch):
  monkeypatch.delenv(xares_encoder.EXPORT_ENV, raising=False)
  with pytest.raises(ValueError, match="set COLA_TF_EXPORT"):
    xares_encoder.ColaTFEncoder()


def test_evar_representation(export_dir):
  # EVAR is not on the package index (and its ar_base imports nnAudio): its base class as
  # documented in evar/ar_base.py, an nn.Module keeping cfg.
  class BaseAudioRepr(torch.nn.Module):
    def __init__(self, cfg):
      super().__init__()
      self.cfg = cfg
  fake = types.ModuleType("evar.ar_base")
  fake.BaseAudioRepr = BaseAudioRepr
  sys.modules.setdefault("evar", types.ModuleType("evar"))
  sys.modules["evar.ar_base"] = fake
  try:
    ar_module = importlib.import_module("hear_module.torch_suites.evar_ar")
    ar = ar_module.AR_ColaTF(types.SimpleNamespace(weight_file=export_dir))
  finally:
    for name in ("evar.ar_base", "evar", "hear_module.torch_suites.evar_ar"):
      sys.modules.pop(name, None)
  audio = _audio(3, 16000 * 2)
  model = hear_module.load_model(export_dir)
  np.testing.assert_array_equal(ar(audio).numpy(), np.asarray(
      hear_module.get_scene_embeddings(audio.numpy(), model)))
  assert ar.encode_frames(audio).shape == (3, 192, 41)  # EVAR's [B, D, T]


def test_s3prl_upstream(export_dir):
  upstream = s3prl_upstream.ColaTFUpstream(export_dir)
  wavs = [_audio(1, 16000, 1)[0], _audio(1, 9600, 2)[0]]
  out = upstream(wavs)
  hidden = out["hidden_states"]
  assert len(hidden) == 1 and hidden[0].shape == (2, 21, 192)
  assert out["last_hidden_state"] is hidden[-1]
  assert upstream.get_downsample_rates("hidden_states") == 800
  model = hear_module.load_model(export_dir)
  alone, _ = hear_module.get_timestamp_embeddings(wavs[0].numpy()[None], model)
  # Batched with another clip: equal up to float rounding of batched kernels.
  np.testing.assert_allclose(hidden[0][0].numpy(), np.asarray(alone)[0], rtol=1e-5, atol=1e-5)
