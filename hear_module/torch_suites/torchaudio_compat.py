"""torchaudio beside the CPU torch, for the torch suites' runners (s3prl, X-ARES).

The package index's torchaudio wheels (2.8-2.11) are CUDA builds: their C++ extension needs
libc10_cuda.so, which torch's CPU wheel lacks, so `import torchaudio` fails. `install()`
adds an import hook before torchaudio is imported (the suites' launchers call it first):
* a failing extension counts as absent, as torchaudio treats a missing one; its pure-Python
  parts work (transforms, functional.resample / lfilter, compliance.kaldi, models);
* `torchaudio.load` reads with soundfile when torchaudio's own (torchcodec since 2.9, not
  installed) cannot (webdataset's decoder in X-ARES calls it);
* `set_audio_backend` (gone in 2.9; s3prl's runner calls it) is a no-op;
* `torchaudio.sox_effects` (needs the extension) becomes the subset s3prl's speech_commands
  uses: channels 1, rate, gain; any other effect raises.
"""
import importlib.abc
import importlib.util
import os
import sys
import tempfile
import types

_PATCHED = ("torchaudio", "torchaudio._extension.utils")


def soundfile_load(path, frame_offset=0, num_frames=-1, normalize=True, channels_first=True,
                   **_):
  """torchaudio.load's signature and result ([channels, samples] float32, rate)."""
  import soundfile as sf  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  del normalize
  audio, rate = sf.read(str(path), dtype="float32", always_2d=True, start=frame_offset,
                        frames=num_frames)
  return torch.from_numpy((audio.T if channels_first else audio).copy()), rate


def apply_effects_tensor(wav, rate, effects, channels_first=True):
  """The sox effects s3prl's speech_commands dataset applies: channels 1, rate R, gain G."""
  import torchaudio  # pylint: disable=import-outside-toplevel
  wav = wav if channels_first else wav.T
  for name, *args in effects:
    if name == "channels" and args == ["1"]:
      wav = wav.mean(dim=0, keepdim=True)
    elif name == "rate":
      if int(float(args[0])) != rate:
        wav = torchaudio.functional.resample(wav, rate, int(float(args[0])))
        rate = int(float(args[0]))
    elif name == "gain":
      wav = wav * (10.0 ** (float(args[-1]) / 20.0))
    else:
      raise NotImplementedError(f"sox effect {name!r}: torchaudio_compat has channels 1, "
                                "rate and gain only (torchaudio's sox needs its extension)")
  return (wav if channels_first else wav.T), rate


def apply_effects_file(path, effects, normalize=True, channels_first=True):
  wav, rate = soundfile_load(path)
  del normalize
  wav, rate = apply_effects_tensor(wav, rate, effects)
  return (wav if channels_first else wav.T), rate


def _patch_load_lib(utils):
  load = utils._load_lib  # pylint: disable=protected-access

  def load_or_absent(lib):
    try:
      return load(lib)
    except OSError:  # the CUDA build's extension beside the CPU torch
      return False
  utils._load_lib = load_or_absent  # pylint: disable=protected-access


def _patch_torchaudio(torchaudio):
  import numpy as np  # pylint: disable=import-outside-toplevel
  import soundfile as sf  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as folder:
    probe = os.path.join(folder, "probe.wav")
    sf.write(probe, np.zeros(160, np.float32), 16000)
    try:
      torchaudio.load(probe)
    except Exception:  # pylint: disable=broad-except  (ImportError, RuntimeError: no backend)
      torchaudio.load = soundfile_load
  if not hasattr(torchaudio, "set_audio_backend"):
    torchaudio.set_audio_backend = lambda *args, **kwargs: None
  if not torchaudio._extension._IS_TORCHAUDIO_EXT_AVAILABLE:  # pylint: disable=protected-access
    sox = types.ModuleType("torchaudio.sox_effects")
    sox.apply_effects_file, sox.apply_effects_tensor = apply_effects_file, apply_effects_tensor
    sys.modules["torchaudio.sox_effects"] = torchaudio.sox_effects = sox


class _Hook(importlib.abc.MetaPathFinder):
  """Runs the patches right after torchaudio (and its extension loader) are imported."""
  busy = False

  def find_spec(self, name, path, target=None):
    if name not in _PATCHED or self.busy:
      return None
    self.busy = True
    try:
      spec = importlib.util.find_spec(name)
    finally:
      self.busy = False
    if spec is None or spec.loader is None:
      return spec
    exec_module = spec.loader.exec_module

    def patched(module):
      exec_module(module)
      (_patch_torchaudio if name == "torchaudio" else _patch_load_lib)(module)
    spec.loader.exec_module = patched
    return spec


def install():
  """Call before anything imports torchaudio (again: nothing happens)."""
  if any(isinstance(f, _Hook) for f in sys.meta_path):
    return
  if "torchaudio" in sys.modules:
    raise RuntimeError("torchaudio_compat.install() must run before torchaudio is imported")
  sys.meta_path.insert(0, _Hook())
