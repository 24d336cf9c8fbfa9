"""Prints the installed size of cola_tf's core install and of each extra, measured in the
running environment (run it with the venv's python after scripts/setup.sh):

  .venv/bin/python scripts/install_sizes.py

Size of a requirement set = the files (from each distribution's RECORD) of every distribution
in its dependency closure; an extra's figure is what it adds on top of the core install.
"""
import importlib.metadata as md
import os
import re
import sys

from packaging.requirements import Requirement


def _name(text):
  return re.sub(r"[-_.]+", "-", text).lower()


def _size(dist):
  root = dist.locate_file("")
  total = 0
  for f in dist.files or ():
    path = os.path.join(root, f)
    if os.path.isfile(path):
      total += os.path.getsize(path)
  return total


def closure(requirements, extras=()):
  """Installed distribution names reached from `requirements` (strings)."""
  seen, todo = set(), [(Requirement(r), set(extras)) for r in requirements]
  while todo:
    req, active = todo.pop()
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (active or {""})):
      continue
    name = _name(req.name)
    try:
      dist = md.distribution(name)
    except md.PackageNotFoundError:
      continue
    if name in seen:
      continue
    seen.add(name)
    todo += [(Requirement(r), set(req.extras)) for r in dist.requires or ()]
  return seen


def main():
  cola = md.distribution("cola_tf")
  reqs = cola.requires or []
  core = {r for r in reqs if "extra ==" not in r}
  sizes = {n: _size(md.distribution(n)) for n in closure(reqs, cola.metadata.get_all(
      "Provides-Extra") or [])}
  core_set = closure(core)
  print(f"core (pip install cola_tf): {sum(sizes.get(n, 0) for n in core_set) / 2**30:.2f} GiB,"
        f" {len(core_set)} distributions")
  for extra in cola.metadata.get_all("Provides-Extra") or []:
    marked = [r.split(";")[0] for r in reqs if f'extra == "{extra}"' in r]
    added = closure(marked) - core_set
    print(f"[{extra}] adds {sum(sizes.get(n, 0) for n in added) / 2**30:.2f} GiB "
          f"({len(added)} distributions; largest: " + ", ".join(
              f"{n} {sizes.get(n, 0) / 2**20:.0f} MiB"
              for n in sorted(added, key=lambda n: -sizes.get(n, 0))[:3]) + ")")
  return 0


if __name__ == "__main__":
  sys.exit(main())
