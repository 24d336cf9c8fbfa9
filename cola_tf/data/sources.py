"""Where clips come from. A source lists its audio files; the pipeline reads them."""
import os

import gin


@gin.configurable
class FolderSource:
  """Every audio file under `root` (recursively) whose extension is in `extensions`."""

  def __init__(self, root, extensions=("wav",)):
    if not root or not os.path.isdir(root):
      raise ValueError(f"FolderSource.root: {root!r} is not a directory")
    self.root = root
    self.extensions = tuple(e.lower().lstrip(".") for e in extensions)
    found = []
    for dirpath, _, names in os.walk(root, followlinks=True):
      for name in names:
        if name.rsplit(".", 1)[-1].lower() in self.extensions and not name.startswith("."):
          found.append(os.path.join(dirpath, name))
    if not found:
      raise ValueError(f"FolderSource: no files with extensions {self.extensions} under {root}")
    self._files = sorted(found)

  def files(self):
    return list(self._files)

  def __len__(self):
    return len(self._files)

  def describe(self):
    return f"{type(self).__name__}({self.root}: {len(self)} files)"
