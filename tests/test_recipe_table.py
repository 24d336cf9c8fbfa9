"""The recipe table (docs/recipe.md) pins the recipe gin files: each row's binding has the row's
value in the configs it names (bound there or the code's default), every binding of
common.gin, recipe_tpu.gin and the seed configs is in the table, every row is "same" with
tests that exist or says how it differs, and every "same" row's value is audax's as audax's
own files state it (tests/fixtures/audax/recipe.json, read from audax's configs and code by
experiments/audax_equivalence/make_fixtures.py), not as the table's audax column says."""
import ast
import inspect
import json
import os
import re

import gin
import pytest

from cola_tf.data import pipeline
from cola_tf.encoders import convnext
from cola_tf.runtime import configuration
from cola_tf.runtime import training  # noqa: F401  (registers every configurable the gin files name)
from conftest import REPO

# Recipe bindings no shipped gin file sets: the code's default is the recipe's value.
CODE_DEFAULTS = {"pair_dataset.pair_shuffle_buffer": pipeline.pair_dataset,
                 "pair_dataset.max_clip_seconds": pipeline.pair_dataset,
                 "build_encoder.layer_scale_init_value": convnext.convnext}
# recipe_tpu.gin's bindings of how and where a run goes, not what it computes: no table rows.
OPERATIONAL = {"TFRecordSource.pattern", "train.checkpoint_every", "train.source",
               "train.steps_per_loop", "train.strategy", "train.tpu_address"}
AUDAX_CONFIG = {"efficientnet_b0": "efficientnetb0", "convnext_tiny": "convnext_tiny",
                "convnext_large": "convnext_large"}

RECIPE_CONFIGS = ("efficientnet_b0", "convnext_tiny", "convnext_large")
BINDING = re.compile(r"^`([A-Za-z_]+\.[A-Za-z_0-9]+)`$")
TEST_REFERENCE = re.compile(r"`(test_[a-z_0-9]+\.py)::(test_[A-Za-z_0-9]+)`")
COLUMNS = 7  # setting | audax | binding | ours | configs | same? | shown by


def table_cells():
  """The rows of the recipe table in docs/recipe.md, as lists of cells."""
  with open(os.path.join(REPO, "docs", "recipe.md")) as f:
    text = f.read()
  section = text.split("## The recipe, setting by setting", 1)[1].split("\n#", 1)[0]
  rows = []
  for line in section.splitlines():
    if not line.startswith("|") or set(line) <= set("|-"):
      continue
    cells = [c.strip() for c in line.replace("\\|", "/").strip().strip("|").split("|")]
    assert len(cells) == COLUMNS, line
    if cells[0] != "setting":
      rows.append(cells)
  return rows


def table_rows():
  """[(binding, value, configs)] from the recipe table's rows that name a binding."""
  rows = []
  for cells in table_cells():
    if not BINDING.match(cells[2]):
      continue
    configs = RECIPE_CONFIGS if cells[4] == "all" else tuple(
        c.strip() for c in cells[4].split(","))
    assert set(configs) <= set(RECIPE_CONFIGS), cells
    rows.append((BINDING.match(cells[2]).group(1), ast.literal_eval(cells[3].strip("`")),
                 configs))
  return rows


def bound_in(path):
  """Bindings set by `path` itself (not its includes), as 'Configurable.param'."""
  with open(path) as f:
    return {m.group(1) for m in (re.match(r"^([A-Za-z_]+\.[A-Za-z_0-9]+)\s*=", line)
                                 for line in f) if m}


def test_every_row_is_same_with_a_test_or_says_how_it_differs():
  """'same' only where a named test shows it: each `file::test` in the row must exist."""
  for cells in table_cells():
    setting, verdict, shown_by = cells[0], cells[5], cells[6]
    references = TEST_REFERENCE.findall(shown_by)
    if verdict.startswith(("same", "as the")):
      assert references, f"recipe row {setting!r} says same but names no test"
    else:
      assert verdict.startswith(("**differs**", "**open**")) and len(verdict) > 40, (
          f"recipe row {setting!r}: say how and why it differs")
    for module, name in references:
      path = os.path.join(REPO, "tests", module)
      assert os.path.exists(path), f"recipe row {setting!r}: no {path}"
      with open(path) as f:
        assert re.search(rf"^def {name}\(", f.read(), re.M), (
            f"recipe row {setting!r}: {module} has no {name}")


def test_the_table_is_there_and_covers_every_recipe_binding():
  rows = table_rows()
  assert len(rows) > 40
  in_table = {b for b, _, _ in rows}
  for name in ("common", "recipe_tpu") + RECIPE_CONFIGS:
    missing = bound_in(configuration.resolve_gin_file(name)) - in_table - OPERATIONAL
    assert not missing, f"{name}.gin binds {sorted(missing)}, not in the recipe table (docs/recipe.md)"


@pytest.mark.parametrize("config", RECIPE_CONFIGS)
def test_recipe_gin_files_match_the_table(config, clean_gin):
  configuration.parse_gin([config], [], None)
  for binding, value, configs in table_rows():
    if config not in configs:
      continue
    got = _ours(binding)
    assert got == value and type(got) in (type(value), float, int), (
        f"{config}.gin: {binding} = {got!r}, docs/recipe.md's recipe table says {value!r}")


def _ours(binding):
  """The config's value of `binding`: bound, or (CODE_DEFAULTS) the code's default."""
  try:
    return gin.query_parameter(binding)
  except ValueError:
    if binding not in CODE_DEFAULTS:
      raise
    return inspect.signature(CODE_DEFAULTS[binding]).parameters[binding.split(".")[1]].default


def audax_recipe(config):
  """{binding: audax's value in our terms} for one seed config, from recipe.json."""
  with open(os.path.join(REPO, "tests", "fixtures", "audax", "recipe.json")) as f:
    recipe = json.load(f)
  ssl, code = recipe["ssl"][AUDAX_CONFIG[config]], recipe["code"]
  audio, opt, spec = ssl["audio_config"], ssl["opt"], ssl["opt"]["spec_augment_args"]
  family = "convnext" if config.startswith("convnext") else "efficientnet"
  values = {
      "LogMelFrontend.sample_rate": audio["sample_rate"],
      "train.crop_seconds": audio["min_duration"],
      "LogMelFrontend.window_length": audio["win_len"],
      "LogMelFrontend.hop_length": audio["hop_len"],
      "LogMelFrontend.fft_length": audio["n_fft"],
      "LogMelFrontend.num_mel_bins": audio["n_mels"],
      "LogMelFrontend.lower_edge_hz": float(audio["fmin"]),
      "LogMelFrontend.upper_edge_hz": float(audio["fmax"]),
      "LogMelFrontend.log_floor": code["log_floor"],
      "LogMelFrontend.waveform_normalization":
          "l2_window" if audio["normalize_waveform"] else "none",
      "LogMelFrontend.normalization":
          "per_window" if ssl["data"].get("normalize_batch") else "none",
      "pair_dataset.positive_noise_stddev": code["positive_noise"],
      "pair_dataset.spec_augment": "positive" if opt["spec_augment"] else "none",
      "spec_augment.num_freq_masks": spec["num_masks"],
      "spec_augment.num_time_masks": spec["num_masks"],
      "spec_augment.freq_mask_width": spec["freq_param"],
      "spec_augment.time_mask_width": spec["time_param"],
      "build_encoder.name": ssl["model"]["arch"],
      "build_encoder.pooling": {"avg": "mean", "max": "max"}[code[f"{family}_global_pool"]],
      "ColaModel.embedding_dim": ssl["model"]["embedding_dim"],
      "ColaModel.similarity": {"bilinear_product": "bilinear"}.get(
          ssl["model"]["similarity_measure"], "cosine"),
      "ColaModel.layer_norm_epsilon": code["flax_layer_norm_epsilon"],
      "ColaModel.bilinear_init_stddev": code["bilinear_init_stddev"],
      "train.global_batch_size": ssl["batch_size"],
      "train.epochs": ssl["num_epochs"],
      "train.seed": code["seed"],
      "train.precision": "mixed_bfloat16" if ssl["half_precision"] else "float32",
      "build_adamw.learning_rate": opt["learning_rate"],
      "build_adamw.weight_decay": opt["weight_decay"],
      "build_adamw.warmup_epochs": opt["warmup_epochs"],
      "build_adamw.reference_batch_size": code["reference_batch_size"],
      "build_adamw.beta_1": code["optax_adamw"]["b1"],
      "build_adamw.beta_2": code["optax_adamw"]["b2"],
      "build_adamw.epsilon": code["optax_adamw"]["eps"],
      "build_adamw.no_weight_decay": () if code["optax_adamw"]["mask"] is None else None,
  }
  if family == "efficientnet":
    values["build_encoder.drop_path_rate"] = code["efficientnet_drop_path_prob"]
  else:
    values["build_encoder.layer_scale_init_value"] = code["convnext_ls_init_value"]
  return values


@pytest.mark.parametrize("config", RECIPE_CONFIGS)
def test_same_rows_hold_audax_values_as_audax_files_state_them(config, clean_gin):
  """The audax column is not trusted: every "same" row's binding must have audax's value
  as recorded from audax's own configs and code, in each config the row names."""
  configuration.parse_gin([config], [], None)
  audax = audax_recipe(config)
  compared = 0
  for cells in table_cells():
    match = BINDING.match(cells[2])
    configs = RECIPE_CONFIGS if cells[4] == "all" else [c.strip() for c in cells[4].split(",")]
    if not match or config not in configs or not cells[5].startswith("same"):
      continue
    binding = match.group(1)
    if binding in audax:
      assert _ours(binding) == audax[binding], (
          f"{config}: {binding} = {_ours(binding)!r} but audax's files say {audax[binding]!r}")
      compared += 1
  assert compared >= 30, compared
  table = {b for b, _, _ in table_rows()}
  assert set(audax) <= table, f"recorded audax values with no table row: {set(audax) - table}"
