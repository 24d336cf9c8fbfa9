"""The one logging path: `[component] message` lines, flushed at once (progress lines must
show up in job logs as they happen); stdout for progress, stderr for errors.

In-graph messages (tf.print inside tf.data) cannot call Python; they use the same
`[cola_tf] ...` prefix by hand.
"""
import functools
import sys


def log(message, component="cola_tf", error=False):
  print(f"[{component}] {message}", file=sys.stderr if error else sys.stdout, flush=True)


def logger(component):
  """`log` bound to one component's prefix, e.g. logger("linear_probe")("done")."""
  return functools.partial(log, component=component)


def format_seconds(seconds):
  """H:MM:SS, for ETAs and durations in progress lines."""
  seconds = int(max(0, seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def command_description(doc):
  """A command line's `--help` description: its docstring's first paragraph on one line (its
  first line alone can stop mid-sentence)."""
  return " ".join(doc.strip().split("\n\n")[0].split())
