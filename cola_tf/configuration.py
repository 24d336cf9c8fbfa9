"""Gin configuration: parsing (operative config first on resume) and derived shapes."""
import logging
import os

import gin
import tensorflow as tf

from cola_tf import files

OPERATIVE_CONFIG = "operative_config.gin"


class _QuietGinResourceProbe(logging.Filter):
  """gin logs an ERROR each time it probes an `include` as a Python resource before finding
  it on the search path; that is not an error, so it is dropped."""

  def filter(self, record):
    return not (record.module == "resource_reader" and
                str(record.msg).startswith("Path not found"))


logging.getLogger().addFilter(_QuietGinResourceProbe())
# gin reads config files with `open` only; this lets it read (and include) them from any
# tf.io.gfile filesystem: gs:// model_dirs keep their operative config there.
gin.config.register_file_reader(tf.io.gfile.GFile, tf.io.gfile.exists)


def parse_gin(gin_files=(), gin_params=(), model_dir=None):
  """Parses the operative config saved in model_dir (if any), then files, then params."""
  configs = []
  if model_dir and tf.io.gfile.exists(os.path.join(model_dir, OPERATIVE_CONFIG)):
    configs.append(os.path.join(model_dir, OPERATIVE_CONFIG))
  configs.extend(gin_files)
  if not configs:
    raise ValueError("no gin config: pass --gin_file (e.g. gin/tiny.gin), or a --model_dir "
                     f"that holds an {OPERATIVE_CONFIG} from an earlier run")
  for path in configs:
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f"gin config file not found: {path}")
    folder = os.path.dirname(files.absolute(path))
    gin.add_config_file_search_path(folder)
  gin.parse_config_files_and_bindings(configs, gin_params, skip_unknown=False)
  return configs


def model_input_shape(frontend, crop_seconds):
  """(frames, mels) of one training crop: what the encoder is built for."""
  crop_samples = int(round(crop_seconds * frontend.sample_rate))
  return (frontend.num_frames(crop_samples), frontend.num_mel_bins)
