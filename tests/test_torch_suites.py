"""Torch-suite adapters over the export: s3prl's and X-ARES's own runners end to end on
Speech Commands tasks built here, X-ARES's encoder check, and EVAR's interface (EVAR is not on
the package index: checked against its documented API)."""
import importlib
import json
import os
import re
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
import torch

import hear_module
from conftest import REPO, make_speech_commands_tree, subprocess_env
from hear_module.torch_suites import s3prl_support, s3prl_upstream, xares_encoder
from hear_module.torch_suites import xares_support

XARES_TASK = "hear_module/torch_suites/xares_speech_commands.py"


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


def test_s3prl_featurizer_probe_gives_no_audio_range_warning():
  """s3prl's Featurizer embeds torch.randn(16000) to size the upstream: no AudioRangeWarning
  about that probe, and the user's own loud audio still gets its one warning after it."""
  import torch
  import hear_module
  from s3prl.upstream import interfaces

  class Model(hear_module.ColaHearModel):  # the checks' view of a loaded export
    def __init__(self):  # pylint: disable=super-init-not-called
      self.sample_rate = 16000

  class Upstream(torch.nn.Module):
    def get_downsample_rates(self, key):
      return 160

    def forward(self, wavs):
      model = Model()
      for wav in wavs:
        hear_module._check_audio(wav.numpy()[None], model)  # pylint: disable=protected-access
      return {"hidden_states": [torch.zeros(len(wavs), 100, 8)]}

  s3prl_support.prepare()
  hear_module._warned_loud = False  # pylint: disable=protected-access
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    interfaces.Featurizer(Upstream(), upstream_device="cpu")
  assert not [w for w in caught if issubclass(w.category, hear_module.AudioRangeWarning)]
  with pytest.warns(hear_module.AudioRangeWarning, match="far outside"):
    hear_module._check_audio(np.full((1, 100), 4.0, np.float32), Model())  # pylint: disable=protected-access


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


@pytest.fixture(scope="module")
def speech_commands(tmp_path_factory):
  """6 words (up, down, go and yes among them) x 8 speakers, numpy audio."""
  root = str(tmp_path_factory.mktemp("speech_commands") / "tree")
  make_speech_commands_tree(root, num_words=6, num_speakers=8, espeak=False)
  return root


def _suite(module, args, env=None):
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        env={**subprocess_env(), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout + proc.stderr


def test_s3prl_runs_its_speech_commands_downstream_on_the_export(export_dir, speech_commands,
                                                                  tmp_path):
  """s3prl's own run_downstream (through s3prl_run: upstream `cola_tf`) trains its
  speech_commands downstream for a few steps and scores dev and test itself."""
  data = str(tmp_path / "s3prl_data")
  counts = s3prl_support.write_speech_commands(speech_commands, data, steps=6, eval_step=6,
                                       batch_size=8)
  assert set(counts) == {"up", "down", "go", "yes", "_unknown_", "_silence_"}
  def clips(split):
    return {os.path.realpath(os.path.join(d, n)) for d, _, names in
            os.walk(os.path.join(data, split)) for n in names if "nohash" in n}
  assert clips("train") and clips("test") and not clips("train") & clips("test")
  exp = str(tmp_path / "s3prl_exp")
  _suite("hear_module.torch_suites.s3prl_run", [
      "-m", "train", "-u", "cola_tf", "-k", export_dir, "-d", "speech_commands", "-c",
      os.path.join(data, "config.yaml"), "-p", exp, "--device", "cpu"])
  with open(os.path.join(exp, "log.log")) as f:
    log = f.read()
  for split in ("dev", "test"):
    score = re.search(rf"{split} at step 6: ([0-9.]+)", log)
    assert score and 0.0 <= float(score.group(1)) <= 1.0, log[-2000:]


def test_xares_runner_scores_the_export_on_a_local_task(export_dir, speech_commands, tmp_path,
                                                        monkeypatch, capsys):
  """X-ARES's own runner (through xares_run) on a task written here in its layout: its MLP
  and kNN scores; results of another export or mode are not reused."""
  env_root = str(tmp_path / "xares")
  assert xares_support.write_speech_commands(speech_commands, env_root) == {
      "train": 36, "valid": 6, "test": 6}
  env = {xares_encoder.EXPORT_ENV: export_dir, xares_support.ENV_ROOT: env_root}
  out = _suite("hear_module.torch_suites.xares_run",
               ["hear_module/torch_suites/xares_encoder.py", XARES_TASK], env)
  row = re.search(r"Speech Commands words \(cola_tf, local\)\s+([0-9.]+)\s+([0-9.]+)", out)
  assert row and all(0.0 <= float(v) <= 1.0 for v in row.groups()), out[-3000:]
  task_dir = os.path.join(env_root, xares_support.NAME)
  results = [os.path.join(task_dir, f, "ColaTFEncoder") for f in xares_support.RESULTS]
  assert all(os.path.isdir(r) for r in results)
  with open(os.path.join(results[0], xares_support.MARKER)) as f:
    assert json.load(f) == {"export": os.path.abspath(export_dir), "fast": False}
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  xares_support.prepare()
  xares_support.fresh_results([XARES_TASK], "ColaTFEncoder")  # same export and mode: kept
  assert all(os.path.isdir(r) for r in results)
  monkeypatch.setenv(xares_encoder.FAST_ENV, "1")
  xares_support.fresh_results([XARES_TASK], "ColaTFEncoder")
  assert "removing" in capsys.readouterr().out
  assert not os.path.isdir(results[1])
