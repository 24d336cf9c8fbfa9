"""The codebase's shape: library functions short enough to read at once, no argparse in
library modules (command lines are thin entry points), no paths into the checkout."""
import ast
import glob
import os

from conftest import REPO

MAX_FUNCTION_LINES = 60
# Command-line entry points: `python -m cola_tf.X` (flags -> a library call) and the
# benchmark scripts. Everything else under cola_tf/ and hear_module/ is library.
ENTRY_POINTS = {"cola_tf/train.py", "cola_tf/export/__main__.py", "cola_tf/linear_probe.py",
                "cola_tf/hear_eval.py", "cola_tf/prepare_speech_commands.py",
                "cola_tf/data/make_tfrecords.py", "hear_module/torch_suites/s3prl_run.py",
                "hear_module/torch_suites/make_s3prl_data.py",
                "hear_module/torch_suites/xares_run.py",
                "hear_module/torch_suites/make_xares_task.py", "cola_tf/import_audax.py"}


def _imports_of(path):
  with open(os.path.join(REPO, path)) as f:
    tree = ast.parse(f.read())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      names |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    elif isinstance(node, ast.Import):
      names |= {a.name for a in node.names}
  return names


def _modules():
  paths = glob.glob(os.path.join(REPO, "cola_tf", "**", "*.py"), recursive=True)
  paths += glob.glob(os.path.join(REPO, "hear_module", "**", "*.py"), recursive=True)
  return sorted(os.path.relpath(p, REPO) for p in paths)


def _code_lines(fn):
  """Lines of a function after its docstring (the docstring documents; it is not code)."""
  body = fn.body
  if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
    body = body[1:]
  return fn.end_lineno - body[0].lineno + 2  # the code, plus the `def` line


def test_no_library_function_is_longer_than_60_lines():
  long = []
  for path in _modules():
    with open(os.path.join(REPO, path)) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if _code_lines(node) > MAX_FUNCTION_LINES:
          long.append(f"{path}:{node.lineno} {node.name} ({_code_lines(node)} lines)")
  assert not long, "functions over 60 lines (split them): " + "; ".join(long)


def test_argparse_only_in_entry_points():
  users = set()
  for path in _modules():
    with open(os.path.join(REPO, path)) as f:
      text = f.read()
    if "import argparse" in text and not path.startswith("cola_tf/benchmarks/"):
      users.add(path)
  assert users <= ENTRY_POINTS, f"argparse in library modules: {sorted(users - ENTRY_POINTS)}"


def test_library_reaches_no_checkout_path():
  for path in _modules():
    with open(os.path.join(REPO, path)) as f:
      text = f.read()
    assert '"..", ".."' not in text and "'..', '..'" not in text, path


def test_entry_points_hold_only_a_command_line():
  for path in ENTRY_POINTS:
    with open(os.path.join(REPO, path)) as f:
      tree = ast.parse(f.read())
    public = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
              and not n.name.startswith("_")}
    assert public == {"main"}, f"{path} defines {sorted(public - {'main'})}: library code"


def test_library_does_not_import_entry_points():
  entry_modules = {p[:-3].replace("/", ".") for p in ENTRY_POINTS}
  for path in _modules():
    if path in ENTRY_POINTS or path.startswith("cola_tf/benchmarks/"):
      continue
    bad = _imports_of(path) & entry_modules
    assert not bad, f"{path} imports the command line module(s) {sorted(bad)}"


def _readme_tree():
  """Paths named in the README's architecture tree (first column; 'a, b' lists split)."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  block = text.split("## Architecture", 1)[1].split("```", 2)[1]
  paths, parent = [], ""
  for line in block.splitlines():
    if not line.strip():
      continue
    indent = len(line) - len(line.lstrip())
    names = line.strip().split("  ")[0]
    for name in (n.strip() for n in names.split(",")):
      full = name if indent == 0 else os.path.join(parent, name)
      paths.append(full)
    if indent == 0:
      parent = names.strip()
  return paths


def test_readme_architecture_matches_the_tree():
  paths = _readme_tree()
  assert len(paths) > 20
  missing = [p for p in paths if not os.path.exists(os.path.join(REPO, p))]
  assert not missing, f"the README's architecture names paths that do not exist: {missing}"
  top = {p.rstrip("/") for p in paths if "/" not in p.rstrip("/")}
  modules = {os.path.relpath(p, os.path.join(REPO, "cola_tf"))
             for p in glob.glob(os.path.join(REPO, "cola_tf", "*.py"))} - {"__init__.py"}
  packages = {os.path.basename(os.path.dirname(p)) + "/"
              for p in glob.glob(os.path.join(REPO, "cola_tf", "*", "__init__.py"))}
  named = {os.path.basename(p.rstrip("/")) + ("/" if p.endswith("/") else "")
           for p in paths if p.startswith("cola_tf/")}
  assert modules | packages <= named, \
      f"modules or packages not in the README's tree: {sorted((modules | packages) - named)}"
  assert {"cola_tf", "hear_module", "experiments/generated_speech", "tests", "scripts",
          "docs"} <= top | {p.rstrip("/") for p in paths}


def test_the_length_check_counts_code_not_docstrings():
  def parsed(source):
    return next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef))
  body = "".join(f"  x{i} = {i}\n" for i in range(61))
  assert _code_lines(parsed("def f():\n" + body)) == 62  # caught: over 60
  doc = '  """' + "doc\n" * 30 + '  """\n'
  assert _code_lines(parsed("def g():\n" + doc + "  return 1\n")) == 2


def _names_in_table(heading):
  """The backticked first-column names of the docs/architecture.md table after `heading`."""
  with open(os.path.join(REPO, "docs", "architecture.md")) as f:
    text = f.read()
  rows = text.split(heading, 1)[1].split("\n\n", 1)[0].splitlines()[2:]
  return {r.split("|")[1].strip().strip("`") for r in rows}


def test_the_registries_are_listed_once_in_the_docs():
  """Every encoder and source registered by cola_tf (not by tests) is in the docs tables,
  and the tables name nothing else."""
  from cola_tf import encoders  # pylint: disable=import-outside-toplevel
  from cola_tf.data import sources  # pylint: disable=import-outside-toplevel
  ours = {n for n, e in encoders.ENCODERS.items() if e.module.startswith("cola_tf")}
  assert _names_in_table("| encoder | what |") == ours
  registered = {n for n, c in sources.SOURCES.items() if c.__module__.startswith("cola_tf")}
  assert _names_in_table("| source | what |") == registered


def test_ci_runs_exactly_the_readme_test_command():
  with open(os.path.join(REPO, ".ci", "run")) as f:
    ci_command = f.read().strip().splitlines()[-1]
  with open(os.path.join(REPO, "README.md")) as f:
    assert f"\n{ci_command}\n" in f.read(), f"README does not show .ci/run's {ci_command!r}"


def test_importing_the_entry_points_leaves_the_signal_mask_alone():
  """train and export block SIGTERM / SIGINT for their signal thread only when run as
  commands: imported (tests, notebooks) they must not, since children started afterwards
  inherit the mask and would not hear a SIGTERM."""
  import signal  # pylint: disable=import-outside-toplevel
  import importlib  # pylint: disable=import-outside-toplevel
  before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
  for name in ("cola_tf.train", "cola_tf.export.__main__", "cola_tf.hear_eval",
               "cola_tf.data.make_tfrecords"):
    importlib.import_module(name)
  assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def _module_name(path):
  name = path[:-3].replace("/", ".")
  return name[:-len(".__init__")] if name.endswith(".__init__") else name


def _import_graph():
  """{module: modules of cola_tf / hear_module it imports, at any depth of its code}: `from
  a.b import c` imports the module a.b.c if there is one, else a.b (a package's __init__)."""
  modules = {_module_name(p): p for p in _modules()}

  def owner(name):  # the innermost of our modules that `name` is or lies in
    while name and name not in modules:
      name = name.rpartition(".")[0]
    return name

  graph = {}
  for name, path in modules.items():
    with open(os.path.join(REPO, path)) as f:
      tree = ast.parse(f.read())
    targets = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module:
        targets |= {owner(f"{node.module}.{a.name}") for a in node.names}
      elif isinstance(node, ast.Import):
        targets |= {owner(a.name) for a in node.names}
    graph[name] = targets - {"", name}
  return graph


def _cycle(graph):
  """One import cycle as a list of modules, or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for target in sorted(graph[node]):
      if state.get(target) == "open":
        return stack[stack.index(target):] + [target]
      if target not in state:
        found = visit(target)
        if found:
          return found
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_import_cycle_among_the_package_modules():
  graph = _import_graph()
  assert {"cola_tf.runtime.training", "cola_tf.encoders.convnext", "hear_module"} <= set(graph)
  assert "cola_tf.runtime.configuration" in graph["cola_tf.runtime.training"]
  cycle = _cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_over_400_lines_without_its_reason():
  """A module over ~400 lines says why in its docstring (a line with 'long:')."""
  long = []
  for path in _modules():
    with open(os.path.join(REPO, path)) as f:
      text = f.read()
    if text.count("\n") > 420 and "long:" not in (ast.get_docstring(ast.parse(text)) or ""):
      long.append(f"{path} ({text.count(chr(10))} lines)")
  assert not long, "modules over 400 lines without a reason in their docstring: " + \
      "; ".join(long)


def test_command_line_descriptions_are_whole_sentences():
  """`--help` shows the docstring's first paragraph (its first line stopped mid-sentence,
  e.g. make_s3prl_data's)."""
  from cola_tf import logs
  from hear_module.torch_suites import make_s3prl_data
  described = logs.command_description(make_s3prl_data.__doc__)
  assert described.endswith("write_speech_commands).") and "\n" not in described
  for path in ENTRY_POINTS:
    with open(os.path.join(REPO, path)) as f:
      source = f.read()
    assert "__doc__.splitlines()[0]" not in source, path
