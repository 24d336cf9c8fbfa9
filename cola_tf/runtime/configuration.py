"""Gin configuration: finding config files, parsing (operative config first on resume), and
derived shapes.

The shipped configs live in the checkout's top-level `gin/`, by concern, and ship inside the
wheel as `cola_tf/gin/` (setup.py maps the one to the other):
  tiny.gin                 the CPU smoke run on the embedded synthetic corpus
  recipe/common.gin        audax's COLA recipe shared by every run (docs/recipe.md)
  schedules/recipe_tpu.gin the seed schedule: 8 x 256 on TPU, 50 epochs, warmup + cosine
  encoders/*.gin           the seed rows: efficientnet_b0, convnext_tiny, convnext_large
`--gin_file` takes a path (`gin/tiny.gin` in the checkout), or a shipped config's name from
any working directory: `tiny`, `tiny.gin`, `gin/tiny.gin` (when no such file exists, the
name is looked up among the shipped configs). `include` lines find shipped configs by name.
"""
import glob
import logging
import os
import re

import gin
import tensorflow as tf
from gin import config_parser

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


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # cola_tf/
# Installed from a wheel: cola_tf/gin/; a checkout (or an editable install of one): gin/
# beside the package. Exactly one of them exists.
PACKAGED_GIN = next((d for d in (os.path.join(_PACKAGE, "gin"),
                                 os.path.join(os.path.dirname(_PACKAGE), "gin"))
                     if os.path.isdir(d)), os.path.join(_PACKAGE, "gin"))


def packaged_configs():
  """{file name: path} of the shipped gin files (gin/*.gin and gin/*/*.gin)."""
  paths = sorted(glob.glob(os.path.join(PACKAGED_GIN, "*.gin"))
                 + glob.glob(os.path.join(PACKAGED_GIN, "*", "*.gin")))
  return {os.path.basename(p): p for p in paths}


def config_of_encoder(encoder):
  """The name of the shipped config that selects `encoder` (`build_encoder.name`), or None;
  the shipped files are the one statement of which config runs which encoder."""
  pattern = re.compile(r"^build_encoder\.name\s*=\s*['\"]" + re.escape(encoder) + r"['\"]",
                       re.MULTILINE)
  for name, path in packaged_configs().items():
    with open(path) as f:
      if pattern.search(f.read()):
        return name
  return None


def resolve_gin_file(name):
  """A gin file's path: `name` itself if it exists, else the shipped config of that name
  (`tiny`, `tiny.gin`, `gin/tiny.gin`)."""
  if tf.io.gfile.exists(name):
    return name
  base = os.path.basename(name)
  base = base if base.endswith(".gin") else base + ".gin"
  shipped = packaged_configs()
  if files.is_url(name) or base not in shipped:
    raise FileNotFoundError(f"gin config file not found: {name} (not a file, nor a shipped "
                            f"config: {', '.join(sorted(shipped))})")
  return shipped[base]


def _add_search_paths(configs):
  for folder in sorted({os.path.dirname(p) for p in packaged_configs().values()}):
    gin.add_config_file_search_path(folder)
  for path in configs:
    gin.add_config_file_search_path(os.path.dirname(files.absolute(path)))


# What gin appends to an exception raised inside a configurable: a line per call, naming a
# function object; our errors name their binding themselves.
_GIN_CONTEXT = re.compile(r"\s*In call to configurable '[^']*' \(<[^>]*>\)")


def without_gin_context(message):
  """An error message without gin's "In call to configurable 'X' (<function ...>)" lines."""
  return _GIN_CONTEXT.sub("", str(message)).strip()


def check_bindings_parse(gin_params):
  """ValueError naming the binding when one of `gin_params` is not gin syntax (gin's own
  error says only 'Unable to parse value. (line 1)')."""
  for binding in gin_params:
    try:
      for _ in config_parser.ConfigParser(binding, gin.config.ParserDelegate(skip_unknown=True)):
        pass
    except SyntaxError as e:
      raise ValueError(f"gin binding {binding!r} does not parse ({e.msg.rstrip('.')}): "
                       "expected NAME.PARAM = VALUE, the value a Python literal, "
                       "@reference or %macro") from None


def parse_gin(gin_files=(), gin_params=(), model_dir=None):
  """Parses the operative config saved in model_dir (if any), then files, then params."""
  check_bindings_parse(gin_params)
  configs = []
  if model_dir and tf.io.gfile.exists(os.path.join(model_dir, OPERATIVE_CONFIG)):
    configs.append(os.path.join(model_dir, OPERATIVE_CONFIG))
  configs.extend(resolve_gin_file(f) for f in gin_files)
  if not configs:
    raise ValueError("no gin config: pass --gin_file (e.g. tiny), or a --model_dir "
                     f"that holds an {OPERATIVE_CONFIG} from an earlier run")
  _add_search_paths(configs)
  gin.parse_config_files_and_bindings(configs, gin_params, skip_unknown=False)
  return configs


def check_resumable_encoder(model_dir, encoder_name):
  """ValueError (one line) when model_dir holds checkpoints of another encoder than the
  config builds (its saved operative config says which): otherwise the restore fails on
  tensor shapes, naming neither."""
  path = os.path.join(model_dir, OPERATIVE_CONFIG)
  if not tf.io.gfile.exists(path) or not tf.train.get_checkpoint_state(model_dir):
    return
  with tf.io.gfile.GFile(path) as f:
    saved = re.search(r"^build_encoder\.name = '([^']+)'", f.read(), re.M)
  if saved and saved.group(1) != encoder_name:
    raise ValueError(f"{model_dir} was trained with encoder {saved.group(1)!r}; the config "
                     f"asks for {encoder_name!r}: pass another --model_dir, or drop the gin "
                     "file or binding that sets build_encoder.name")


def save_operative_config(model_dir):
  """Writes what gin has recorded as called (after the pipeline is built) beside the
  checkpoints, atomically: a resume parses it first."""
  files.atomic_write(os.path.join(model_dir, OPERATIVE_CONFIG), gin.operative_config_str())


def bindings_help(configurables):
  """Lines for `--help`: the shipped configs, and each configurable's bindings with their
  defaults ({name: (callable, parameters it does not take from gin)})."""
  import inspect  # pylint: disable=import-outside-toplevel
  lines = [f"Shipped gin configs (--gin_file NAME): {', '.join(sorted(packaged_configs()))}",
           "Main gin bindings (--gin_param \"NAME.PARAM = VALUE\"), with their defaults; the "
           "recipe's values are in docs/recipe.md:"]
  for name, (fn, not_bound) in configurables.items():
    target = getattr(fn, "__init__", fn) if inspect.isclass(fn) else fn
    for param in inspect.signature(target).parameters.values():
      if param.name in ("self",) + tuple(not_bound) or param.kind is param.VAR_KEYWORD:
        continue
      default = "required" if param.default is param.empty or param.default is gin.REQUIRED \
          else repr(param.default)
      lines.append(f"  {name}.{param.name} = {default}")
  return lines


def model_input_shape(frontend, crop_seconds):
  """(frames, mels) of one training crop: what the encoder is built for."""
  crop_samples = int(round(crop_seconds * frontend.sample_rate))
  return (frontend.num_frames(crop_samples), frontend.num_mel_bins)
