"""The recipe table (docs/recipe.md) pins the recipe gin files: each row's binding has the row's
value in the configs it names, every binding of common.gin and of the seed configs is in the
table, and every row is "same" with tests that exist, or says how it differs."""
import ast
import os
import re

import gin
import pytest

from cola_tf.runtime import configuration
from cola_tf.runtime import training  # noqa: F401  (registers every configurable the gin files name)
from conftest import REPO

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
