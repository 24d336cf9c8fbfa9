"""The probe's report: results.json, per_class.csv, confusion.csv and confusion.png."""
import io
import json
import os

import numpy as np
import tensorflow as tf

from cola_tf import files


def confusion_matrix(labels, predictions, num_classes):
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels, predictions), 1)
  return matrix


def write_report(output, class_names, result, description):
  """results.json, per_class.csv, confusion.csv and confusion.png in `output` (atomic each;
  any tf.io.gfile filesystem, e.g. gs://)."""
  tf.io.gfile.makedirs(output)
  matrix = confusion_matrix(result["test_labels"], result["test_predictions"], len(class_names))
  totals = matrix.sum(axis=1)
  per_class = {name: (float(matrix[i, i] / totals[i]) if totals[i] else None)
               for i, name in enumerate(class_names)}

  def atomic(name, content):
    files.atomic_write(os.path.join(output, name), content)

  summary = {k: v for k, v in result.items() if k not in ("test_predictions", "test_labels")}
  summary.update(description, classes=list(class_names), per_class_accuracy=per_class)
  atomic("results.json", json.dumps(summary, indent=1))
  atomic("per_class.csv", "class,test_clips,test_accuracy\n" + "".join(
      f"{n},{totals[i]},{'' if per_class[n] is None else f'{per_class[n]:.4f}'}\n"
      for i, n in enumerate(class_names)))
  atomic("confusion.csv", "true\\predicted," + ",".join(class_names) + "\n" + "".join(
      f"{n}," + ",".join(str(v) for v in matrix[i]) + "\n" for i, n in enumerate(class_names)))

  def png():
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    size = max(5.0, 0.22 * len(class_names))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    rows = matrix / np.maximum(totals[:, None], 1)
    image = ax.imshow(rows, cmap="viridis", vmin=0, vmax=1)
    if len(class_names) <= 60:
      ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
      ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{description['task']}: test top-1 {result['test_accuracy']:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()

  atomic("confusion.png", png())
  return per_class
