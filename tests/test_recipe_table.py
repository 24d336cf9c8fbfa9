"""The recipe table (docs/recipe.md) pins the recipe gin files: each row's binding has the row's
value in the configs it names, and every binding of common.gin and of the seed configs is
in the table."""
import ast
import os
import re

import gin
import pytest

from cola_tf import configuration
from cola_tf import training  # noqa: F401  (registers every configurable the gin files name)
from conftest import REPO

RECIPE_CONFIGS = ("efficientnet_b0", "convnext_tiny", "convnext_large")
BINDING = re.compile(r"^`([A-Za-z_]+\.[A-Za-z_0-9]+)`$")


def table_rows():
  """[(binding, value, configs)] from the recipe table in docs/recipe.md."""
  with open(os.path.join(REPO, "docs", "recipe.md")) as f:
    text = f.read()
  section = text.split("## The recipe, setting by setting", 1)[1].split("\n#", 1)[0]
  rows = []
  for line in section.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) != 6 or not BINDING.match(cells[2]):
      continue
    configs = RECIPE_CONFIGS if cells[4] == "all" else tuple(
        c.strip() for c in cells[4].split(","))
    assert set(configs) <= set(RECIPE_CONFIGS), line
    rows.append((BINDING.match(cells[2]).group(1), ast.literal_eval(cells[3].strip("`")),
                 configs))
  return rows


def bound_in(path):
  """Bindings set by `path` itself (not its includes), as 'Configurable.param'."""
  with open(path) as f:
    return {m.group(1) for m in (re.match(r"^([A-Za-z_]+\.[A-Za-z_0-9]+)\s*=", line)
                                 for line in f) if m}


def test_the_table_is_there_and_covers_every_recipe_binding():
  rows = table_rows()
  assert len(rows) > 40
  in_table = {b for b, _, _ in rows}
  for name in ("common",) + RECIPE_CONFIGS:
    missing = bound_in(configuration.resolve_gin_file(name)) - in_table
    assert not missing, f"{name}.gin binds {sorted(missing)}, not in the recipe table (docs/recipe.md)"


@pytest.mark.parametrize("config", RECIPE_CONFIGS)
def test_recipe_gin_files_match_the_table(config, clean_gin):
  configuration.parse_gin([config], [], None)
  for binding, value, configs in table_rows():
    if config not in configs:
      continue
    got = gin.query_parameter(binding)  # raises if the recipe leaves it to a code default
    assert got == value and type(got) in (type(value), float, int), (
        f"{config}.gin: {binding} = {got!r}, docs/recipe.md's recipe table says {value!r}")
