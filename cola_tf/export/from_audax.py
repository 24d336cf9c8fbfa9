"""audax's COLA checkpoints into our Keras model: the reader and the parameter map.

audax's training saves its train state with flax's `checkpoints.save_checkpoint`: one msgpack
file `checkpoint_N` holding {'step', 'params', 'batch_stats', 'opt_state', ...}, each array
a msgpack extension (type 1 = [shape, dtype name, raw bytes]; arrays over 1 GiB are chunked
into {'__msgpack_chunked_array__', 'shape', 'chunks'}). `read_checkpoint` reads it with
`msgpack` and numpy alone (no jax or flax). `load_into(model, state)` maps every parameter
and BatchNorm statistic of audax's COLA (ConvNeXt or EfficientNet encoder, `embedding_fc`,
`bilinear_layernorm`, the bilinear `similarity_layer`) onto a built `ColaModel`; a parameter
left over, missing on either side, or of another shape is one line naming it.
`write_export` turns a checkpoint into a normal export (`python -m cola_tf.import_audax`).
"""
import hashlib
import os
import re

import gin
import msgpack
import numpy as np
import tf_keras

from cola_tf import logs
from cola_tf.export import frozen_encoder
from cola_tf.runtime import configuration

_NDARRAY, _NPSCALAR = 1, 3  # flax's msgpack extension codes
_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")


def _array(data):
  shape, dtype, buffer = msgpack.unpackb(data, raw=True)
  dtype = dtype.decode()
  if dtype == "bfloat16":  # audax's bf16 parameters (ml_dtypes comes with TensorFlow)
    import ml_dtypes  # pylint: disable=import-outside-toplevel
    dtype = ml_dtypes.bfloat16
  # float32 arrays stay views of the file's bytes (no copy: a ConvNeXt-L state is ~2.4 GB).
  return np.frombuffer(buffer, dtype=dtype).reshape(shape).astype(np.float32, copy=False)


def _ext_hook(code, data):
  if code in (_NDARRAY, _NPSCALAR):
    return _array(data)
  return msgpack.ExtType(code, data)


def _unchunk(tree):
  if isinstance(tree, dict):
    if "__msgpack_chunked_array__" in tree:
      chunks = [tree["chunks"][k] for k in sorted(tree["chunks"], key=int)]
      shape = [tree["shape"][k] for k in sorted(tree["shape"], key=int)]
      return np.concatenate(chunks).reshape(shape)
    return {k: _unchunk(v) for k, v in tree.items()}
  return tree


def checkpoint_file(path):
  """`path` itself, or the newest `checkpoint_N` in a folder (audax's workdir)."""
  if not os.path.isdir(path):
    if not os.path.exists(path):
      raise ValueError(f"import_audax: {path}: no such file or folder")
    return path
  found = [(int(m.group(1)), name) for name in os.listdir(path)
           if (m := _CHECKPOINT.match(name))]
  if not found:
    raise ValueError(f"import_audax: {path} holds no checkpoint_N file (audax's "
                     "save_checkpoint writes checkpoint_<step>)")
  return os.path.join(path, max(found)[1])


def read_checkpoint(path):
  """(state dict with numpy float32 leaves, the file read)."""
  path = checkpoint_file(path)
  with open(path, "rb") as f:
    try:
      state = msgpack.unpackb(f.read(), ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except (ValueError, msgpack.exceptions.ExtraData) as e:
      raise ValueError(f"import_audax: {path} is not a flax msgpack checkpoint ({e})") from e
  if not isinstance(state, dict) or "params" not in state:
    raise ValueError(f"import_audax: {path} holds no 'params' (keys: "
                     f"{sorted(state) if isinstance(state, dict) else type(state).__name__})")
  return _unchunk(state), path


def flatten(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    name = f"{prefix}/{key}" if prefix else str(key)
    if isinstance(value, dict):
      out.update(flatten(value, name))
    else:
      out[name] = value
  return out


def _depthwise(kernel):  # flax grouped conv (k, k, 1, C) -> Keras DepthwiseConv2D (k, k, C, 1)
  return np.transpose(kernel, (0, 1, 3, 2))


def _convnext_map(encoder):
  """{our layer name: [(audax path, transform), ...] in the layer's weight order}."""
  v, stages = encoder.name, _stage_depths(encoder)
  out = {f"{v}_stem_conv": _wb("encoder/Conv_0"),
         f"{v}_stem_layernorm": _norm("encoder/LayerNorm_0")}
  for s, depth in enumerate(stages):
    stage = f"encoder/ConvNeXtStage_{s}"
    if s > 0:
      out[f"{v}_downsampling_layernorm_{s - 1}"] = _norm(f"{stage}/LayerNorm_0")
      out[f"{v}_downsampling_conv_{s - 1}"] = _wb(f"{stage}/Conv_0")
    for j in range(depth):
      block, ours = f"{stage}/ConvNeXtBlock_{j}", f"{v}_stage_{s}_block_{j}"
      out[f"{ours}_depthwise_conv"] = [(f"{block}/Conv_0/kernel", _depthwise),
                                       (f"{block}/Conv_0/bias", None)]
      out[f"{ours}_layernorm"] = _norm(f"{block}/LayerNorm_0")
      out[f"{ours}_pointwise_conv_1"] = _wb(f"{block}/Mlp_0/Dense_0")
      out[f"{ours}_pointwise_conv_2"] = _wb(f"{block}/Mlp_0/Dense_1")
      out[f"{ours}_layer_scale"] = [(f"{block}/gamma", None)]
  return out


def _stage_depths(encoder):
  depths = {}
  for layer in encoder.layers:
    m = re.search(r"_stage_(\d+)_block_(\d+)_depthwise_conv$", layer.name)
    if m:
      depths[int(m.group(1))] = max(depths.get(int(m.group(1)), 0), int(m.group(2)) + 1)
  return [depths[s] for s in sorted(depths)]


def _efficientnet_map(backbone):
  """keras.applications' names (stem, blockNx_*, top) from audax's torchvision layout."""
  names = [layer.name for layer in backbone.layers]
  blocks = [n[:-len("_dwconv")] for n in names if n.endswith("_dwconv")]
  out = {"stem_conv": _k("encoder/ConvNormActivation_0"),
         "stem_bn": _bn("encoder/ConvNormActivation_0"),
         "top_conv": _k("encoder/ConvNormActivation_1"),
         "top_bn": _bn("encoder/ConvNormActivation_1")}
  for i, block in enumerate(blocks):
    theirs = f"encoder/MBConv_{i}"
    parts = (["expand"] if f"{block}_expand_conv" in names else []) + ["dw", "project"]
    cna = {part: f"{theirs}/ConvNormActivation_{k}" for k, part in enumerate(parts)}
    if "expand" in cna:
      out[f"{block}_expand_conv"] = _k(cna["expand"])
      out[f"{block}_expand_bn"] = _bn(cna["expand"])
    out[f"{block}_dwconv"] = [(f"{cna['dw']}/Conv_0/kernel", _depthwise)]
    out[f"{block}_bn"] = _bn(cna["dw"])
    out[f"{block}_se_reduce"] = [(f"{theirs}/SqueezeAndExcitation_0/reduce/kernel", None)]
    out[f"{block}_se_expand"] = [(f"{theirs}/SqueezeAndExcitation_0/expand/kernel", None)]
    out[f"{block}_project_conv"] = _k(cna["project"])
    out[f"{block}_project_bn"] = _bn(cna["project"])
  return out


def _wb(path):
  return [(f"{path}/kernel", None), (f"{path}/bias", None)]


def _k(path):
  return [(f"{path}/Conv_0/kernel", None)]


def _norm(path):
  return [(f"{path}/scale", None), (f"{path}/bias", None)]


def _bn(path):
  return [(f"{path}/BatchNorm_0/scale", None), (f"{path}/BatchNorm_0/bias", None),
          (f"stats:{path}/BatchNorm_0/mean", None), (f"stats:{path}/BatchNorm_0/var", None)]


def _encoder_layers(encoder):
  """(layers whose weights are mapped, the name map) for a registered ConvNeXt or
  EfficientNet encoder; other encoders have no audax counterpart here."""
  if encoder.name.startswith("convnext_"):
    return encoder.layers, _convnext_map(encoder)
  if encoder.name.startswith("efficientnet_"):
    backbone = [layer for layer in encoder.layers if hasattr(layer, "layers")]
    if len(backbone) != 1:
      raise ValueError(f"import_audax: expected one keras.applications backbone in "
                       f"{encoder.name}, found {len(backbone)}")
    # The input normalisation (mean 0, variance 1: the identity) has no audax counterpart.
    return ([layer for layer in backbone[0].layers
             if not isinstance(layer, tf_keras.layers.Normalization)],
            _efficientnet_map(backbone[0]))
  raise ValueError(f"import_audax: no audax layout for encoder {encoder.name!r} (ConvNeXt "
                   "and EfficientNet are mapped)")


def mapping(model):
  """[(our variable, audax path, transform)] for every weight of a built ColaModel; audax's
  BatchNorm statistics have paths 'stats:...' (its `batch_stats` collection)."""
  if model.similarity != "bilinear":
    raise ValueError("import_audax: audax's published COLA heads are bilinear; the config "
                     f"asks for similarity {model.similarity!r}")
  targets = {model.projection: [("embedding_fc/kernel", None)],
             model.layer_norm: _norm("bilinear_layernorm"),
             model.bilinear: [("similarity_layer/bilinear_product_weight", None)]}
  layers, names = _encoder_layers(model.encoder)
  for layer in layers:
    if not layer.weights:
      continue
    if layer.name not in names:
      raise ValueError(f"import_audax: our layer {layer.name} has no audax counterpart")
    targets[layer] = names.pop(layer.name)
  if names:
    raise ValueError(f"import_audax: {len(names)} mapped layers missing from our "
                     f"{model.encoder.name}, e.g. {sorted(names)[0]}: another size?")
  out = []
  for layer, sources in targets.items():
    if len(sources) != len(layer.weights):
      raise ValueError(f"import_audax: our layer {layer.name} has {len(layer.weights)} "
                       f"weights, audax's counterpart {len(sources)}")
    out.extend((weight, path, transform) for weight, (path, transform)
               in zip(layer.weights, sources))
  return out


def _shown(path):
  return path.replace("stats:", "batch_stats/")


def load_into(model, state):
  """Sets every weight of a built ColaModel from an audax COLA state; returns the number of
  arrays set. ValueError (one line) for a parameter unmapped, missing or mis-shaped."""
  params = flatten(state["params"])
  params.update({f"stats:{k}": v for k, v in flatten(state.get("batch_stats") or {}).items()})
  pairs = mapping(model)
  values = []
  for weight, path, transform in pairs:
    if path not in params:
      raise ValueError(f"import_audax: the checkpoint lacks {_shown(path)} (for our "
                       f"{weight.name})")
    value = params[path] if transform is None else transform(params[path])
    if tuple(value.shape) != tuple(weight.shape):
      raise ValueError(f"import_audax: {_shown(path)} has shape {tuple(value.shape)}, our "
                       f"{weight.name} {tuple(weight.shape)}")
    values.append(value)
  left = sorted(set(params) - {path for _, path, _ in pairs})
  if left:
    raise ValueError(f"import_audax: {len(left)} audax arrays have no place in our "
                     f"{model.encoder.name}, e.g. {_shown(left[0])}: another size or "
                     "architecture?")
  for (weight, _, _), value in zip(pairs, values):
    weight.assign(value)
  return len(pairs)


def write_export(checkpoint, gin_files, gin_params, output):
  """Writes an audax checkpoint as an export (the encoder and frontend of the gin config,
  the embedding size of the checkpoint); returns the export's metadata."""
  state, path = read_checkpoint(checkpoint)
  gin.clear_config()
  configuration.parse_gin(gin_files, gin_params)
  kernel = flatten(state["params"]).get("embedding_fc/kernel")
  if kernel is None:
    raise ValueError(f"import_audax: {path} has no params/embedding_fc/kernel: not a COLA "
                     "checkpoint (audax's supervised checkpoints have no COLA head)")
  frontend, model, window_samples = frozen_encoder.configured_model(
      embedding_dim=int(kernel.shape[1]))
  count = load_into(model, state)
  logs.log(f"mapped {count} arrays of {path} into {model.encoder.name}")
  config = gin.config_str()
  module = frozen_encoder.FrozenEncoder(frontend, model.encoder, window_samples)
  return frozen_encoder.save(module, output, {
      "training_step": int(state.get("step", -1)), "checkpoint": path,
      "imported_from": "audax (flax msgpack)",
      "gin_config_sha1": hashlib.sha1(config.encode()).hexdigest()})
