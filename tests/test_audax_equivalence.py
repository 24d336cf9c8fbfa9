"""Our code against audax's own, from numbers audax's code recorded (tests/fixtures/audax,
written by experiments/audax_equivalence/make_fixtures.py in a scratch jax environment):
checkpoints import, the frontend, encoders, head, similarity and loss compute what audax's
compute, and 10 training steps move the parameters as audax's optax step does."""
import importlib.util
import os

import msgpack
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO

HERE = os.path.join(REPO, "experiments", "audax_equivalence")
MODELS = ("convnext", "efficientnet")


def _module(name):
  spec = importlib.util.spec_from_file_location(f"audax_equivalence_{name}",
                                                os.path.join(HERE, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


compare = _module("compare")
inputs = compare.inputs


@pytest.fixture(autouse=True)
def _gin_cleared(clean_gin):
  """compare.load and the import command parse a recipe config: none of it may outlive a
  test (another test's build_encoder would get ConvNeXt's bindings)."""
  yield


@pytest.mark.parametrize("name", MODELS)
def test_imported_checkpoint_computes_what_audax_computes(name):
  model, frontend, audax = compare.load(name)
  differences = compare.forward_differences(model, frontend, audax)
  # The frontend: float32 STFT and mel sums in another order (measured 7e-6 and 1.1e-5).
  assert differences.pop("frontend") < 3e-5
  # Encoder, head, bilinear logits, loss, BatchNorm statistics, in inference and training
  # mode: float32 rounding (measured at most 1.5e-5).
  assert max(differences.values()) < 5e-5, differences
  assert {"inference/logits", "training/loss"} <= set(differences)
  if name == "efficientnet":
    assert differences["training/batch_statistics"] < 5e-5


def test_bfloat16_forward_has_audax_precision_scope():
  """ConvNeXt's bf16 stem and downsampling, float32 blocks, and downsampling LayerNorms that
  normalise the blocks' float32 output (not a bf16-rounded copy)."""
  model, _, audax = compare.load("convnext")
  # Measured 5.2e-4 (bf16 convolutions summed in another order); Keras' LayerNorm rounding
  # its float32 input first: 2.6e-3; the whole encoder in bf16: 4.8e-3.
  assert compare.bfloat16_difference(model, audax) < 1e-3
  model, _, audax = compare.load("convnext", gin_params=["build_encoder.float32_blocks = False"])
  assert compare.bfloat16_difference(model, audax) > 2e-3


@pytest.mark.parametrize("name", MODELS)
def test_ten_training_steps_move_the_parameters_as_audax_optax_step(name):
  model, _, audax = compare.load(name)
  differences = compare.step_differences(model, audax, name)
  gradients = {k: v for k, v in differences.items() if k.startswith("gradients")}
  assert max(gradients.values()) < 5e-5, gradients
  assert differences["loss per step"] < 1e-5
  assert differences["learning rate per step"] < 1e-6  # warmup from 0, then cosine: optax's
  assert differences["elements whose step-1 gradients are rounding (not compared)"] < 0.01
  # Parameter changes relative to the group's largest change: Adam divides by sqrt(v), so
  # gradients' float32 rounding shows in weights whose gradients are near 0 (measured
  # at most 4.8e-3 after step 2, 6.7e-4 after step 10; Keras' epsilon placement: 0.48).
  changes = {k: v for k, v in differences.items() if k.startswith("parameter change")}
  assert max(changes.values()) < 1e-2, changes
  assert max(v for k, v in changes.items() if "step 10" in k) < 2e-3, changes
  statistics = [v for k, v in differences.items() if k.startswith("batch statistics")]
  assert max(statistics, default=0.0) < 1e-4


@pytest.mark.parametrize("name,binding,apart", [
    ("convnext", "build_adamw.epsilon_placement = 'keras'", 0.1),  # measured 0.48
    ("convnext", "build_adamw.gradient_clip_norm = 0.1", 0.1),  # measured 0.60 (norm ~0.7)
])
def test_recipe_departures_are_what_the_comparison_catches(name, binding, apart):
  """Controls: Keras' epsilon placement, or gradient clipping the recipe does not have, move
  the parameters far beyond the bound the equivalence test holds."""
  model, _, audax = compare.load(name, gin_params=[binding])
  differences = compare.step_differences(model, audax, name)
  assert max(v for k, v in differences.items() if k.startswith("parameter change after step 10")
             ) > apart


def _state(name):
  from cola_tf.export import from_audax
  return from_audax.read_checkpoint(os.path.join(compare.FIXTURES, name))[0]


def test_import_errors_name_the_parameter(tmp_path):
  from cola_tf.export import from_audax
  model, _, _ = compare.load("convnext")
  state = _state("convnext")
  state["params"]["encoder"]["Conv_0"]["extra"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match="no place .* encoder/Conv_0/extra"):
    from_audax.load_into(model, state)
  state = _state("convnext")
  del state["params"]["encoder"]["ConvNeXtStage_1"]["LayerNorm_0"]["scale"]
  with pytest.raises(ValueError, match="lacks encoder/ConvNeXtStage_1/LayerNorm_0/scale"):
    from_audax.load_into(model, state)
  state = _state("convnext")
  state["params"]["similarity_layer"]["bilinear_product_weight"] = np.zeros((8, 8), np.float32)
  with pytest.raises(ValueError, match=r"bilinear_product_weight has shape \(8, 8\)"):
    from_audax.load_into(model, state)
  not_msgpack = tmp_path / "checkpoint_3"
  not_msgpack.write_bytes(b"\xc1 not msgpack")
  with pytest.raises(ValueError, match="not a flax msgpack checkpoint"):
    from_audax.read_checkpoint(str(tmp_path))
  with pytest.raises(ValueError, match="holds no checkpoint_N"):
    from_audax.read_checkpoint(str(tmp_path / ".."))
  no_params = tmp_path / "other" / "checkpoint_1"
  no_params.parent.mkdir()
  no_params.write_bytes(msgpack.packb({"step": 1}))
  with pytest.raises(ValueError, match="holds no 'params'"):
    from_audax.read_checkpoint(str(no_params.parent))


def test_checkpoint_reader_takes_the_newest_and_bfloat16_and_chunked_arrays(tmp_path):
  from cola_tf.export import from_audax
  import ml_dtypes

  def ext(array):  # flax's encoding, written independently of the reader
    return msgpack.ExtType(1, msgpack.packb(
        [list(array.shape), array.dtype.name, array.tobytes()], use_bin_type=True))

  values = np.arange(6, dtype=np.float32).reshape(2, 3)
  chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 3},
             "chunks": {"0": ext(values.ravel()[:4]), "1": ext(values.ravel()[4:])}}
  state = {"step": 7, "params": {"w": ext(values.astype(ml_dtypes.bfloat16)), "c": chunked}}
  (tmp_path / "checkpoint_7").write_bytes(msgpack.packb(state, use_bin_type=True))
  (tmp_path / "checkpoint_12").write_bytes(msgpack.packb({**state, "step": 12},
                                                         use_bin_type=True))
  read, path = from_audax.read_checkpoint(str(tmp_path))
  assert path.endswith("checkpoint_12") and read["step"] == 12
  np.testing.assert_array_equal(read["params"]["w"], values)
  assert read["params"]["w"].dtype == np.float32
  np.testing.assert_array_equal(read["params"]["c"], values)


@pytest.mark.slow
def test_import_command_writes_an_export_with_audax_embeddings(tmp_path):
  """README: `python -m cola_tf.import_audax` -> an export whose windows embed as audax's
  encoder does (through our frontend, which equals audax's)."""
  from cola_tf import import_audax
  out = str(tmp_path / "export")
  config, params = compare.CONFIGS["convnext"]
  argv = ["--checkpoint", os.path.join(compare.FIXTURES, "convnext"), "--gin_file", config,
          "--output", out] + [x for p in params for x in ("--gin_param", p)]
  assert import_audax.main(argv) == 0
  assert import_audax.main(argv) == 2  # an existing export is not replaced silently
  missing = ["--checkpoint", str(tmp_path / "nothing"), "--gin_file", config, "--output",
             str(tmp_path / "other")]
  assert import_audax.main(missing) == 2 and not os.path.exists(tmp_path / "other")
  loaded = tf.saved_model.load(out)
  audax = dict(np.load(os.path.join(compare.FIXTURES, "convnext", "outputs.npz")))
  embeddings = loaded.window_embeddings(tf.constant(inputs.waveform_pairs())).numpy()
  assert compare.relative(embeddings, audax["inference/features"]) < 1e-4
  from cola_tf.export import metadata
  meta = metadata.read(out)
  assert meta["imported_from"].startswith("audax") and meta["training_step"] == 0
