"""Encoders: log-mel [batch, frames, mels] -> pooled features [batch, dim], and their
registry (`ENCODERS`, `register_encoder`, `build_encoder`), the one list of encoders
(docs/architecture.md lists it; a test keeps the two equal).

One module per family (`small_cnn`, `efficientnet`, `convnext`: each docstring says how it
follows audax or keras.applications) over the shared `layers`. DropPath draws per-replica
masks: each call's stateful seed (the same on every worker) has the global replica id folded
in, so workers of a multi-worker job drop differently.
"""
import dataclasses
import functools
from typing import Callable

import gin

from cola_tf.encoders import convnext
from cola_tf.encoders import efficientnet
from cola_tf.encoders import small_cnn
# The shared layers, for encoders written elsewhere (docs/architecture.md, contributing).
from cola_tf.encoders.layers import POOLINGS  # noqa: F401
from cola_tf.encoders.layers import GELU  # noqa: F401
from cola_tf.encoders.layers import DropPath  # noqa: F401
from cola_tf.encoders.layers import log_mel_input  # noqa: F401
from cola_tf.encoders.layers import pool  # noqa: F401
from cola_tf.encoders.layers import split_at_pool  # noqa: F401


@dataclasses.dataclass(frozen=True)
class EncoderEntry:
  """A registered encoder: `builder(input_shape, pooling=..., drop_path_rate=..., **options)`
  returns a tf_keras.Model named as its registry key; `small` holds options that build a
  small version of it (the tests build every entry so). `benchmarked`: in the benchmarks'
  default tables (float32, bf16 and XLA rows); `variants`: further named rows of the
  train-step table, {label: {"precision": ..., **builder options}}."""
  builder: Callable
  small: dict
  module: str
  benchmarked: bool = False
  variants: dict = dataclasses.field(default_factory=dict)


ENCODERS = {}  # name -> EncoderEntry: the one list of encoders


def register_encoder(name, builder, small=None, benchmarked=False, variants=None):
  """Adds an encoder to the registry (see EncoderEntry); names are unique."""
  if name in ENCODERS:
    raise ValueError(f"register_encoder: {name!r} is registered already")
  ENCODERS[name] = EncoderEntry(builder, dict(small or {}),
                                getattr(builder, "__module__", None) or __name__,
                                benchmarked, dict(variants or {}))


def _variant(builder, variant):
  built = functools.partial(builder, variant)
  built.__module__ = builder.__module__
  return built


register_encoder("small_cnn", small_cnn.small_cnn, small={"channels": (4, 8)}, benchmarked=True)
for _name in efficientnet.VARIANTS:
  register_encoder(_name, _variant(efficientnet.efficientnet, _name),
                   small={"blocks_args": [dict(b) for b in efficientnet.SMALL_EFFICIENTNET_BLOCKS]},
                   benchmarked=_name == "efficientnet_b0")
for _name in convnext.CONVNEXT_CONFIGS:
  register_encoder(_name, _variant(convnext.convnext, _name),
                   small={"depths": (1, 1, 1, 1), "dims": (8, 16, 24, 32)},
                   benchmarked=_name == "convnext_tiny", variants=convnext.BENCHMARK_VARIANTS)


@gin.configurable(denylist=["input_shape"])
def build_encoder(name="small_cnn", input_shape=(100, 64), pooling="max", drop_path_rate=0.0,
                  **kwargs):
  """Builds the registered encoder called `name` (`ENCODERS`): [batch, frames, mels] ->
  [batch, features]. The encoder takes any number of frames (input_shape[0] is the training
  crop's, for reference).

  `drop_path_rate` is the stochastic-depth rate (EfficientNet's drop_connect_rate, ConvNeXt's
  and small_cnn's DropPath); it is applied in training and off at inference. Other keyword
  arguments go to the builder (EfficientNet and ConvNeXt take `style`, 'audax' by default,
  or 'keras'; see the module docstring).
  """
  if name not in ENCODERS:
    raise ValueError(f"build_encoder: unknown encoder {name!r}; choose one of "
                     f"{', '.join(ENCODERS)}")
  input_shape = tuple(int(d) for d in input_shape)
  model = ENCODERS[name].builder(input_shape, pooling=pooling, drop_path_rate=drop_path_rate,
                                 **kwargs)
  if model.name != name:  # exports record it; heareval's result folders are keyed by it
    raise ValueError(f"build_encoder: the builder of {name!r} returned a model named "
                     f"{model.name!r}; name it as its registry key")
  return model
