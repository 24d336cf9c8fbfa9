"""Strategy selection (through Model Garden's distribute_utils) and chief/worker paths."""
import os
import sys
import tempfile

import tensorflow as tf
from official.common import distribute_utils

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")


def split_cpu(replicas):
  """Splits the host CPU into `replicas` logical devices; must run before TF starts."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
  except RuntimeError as e:
    if len(tf.config.list_logical_devices("CPU")) != replicas:
      raise ValueError(f"train.cpu_replicas={replicas}: the CPU must be split before "
                       f"TensorFlow starts ({e})") from e
  return [d.name for d in tf.config.list_logical_devices("CPU")]


def build_strategy(name="default", tpu_address=None, devices=None, cpu_replicas=None):
  """'tpu' resolves `tpu_address` ('' or 'local' on a TPU VM, a name or grpc:// address) and
  initialises the TPU system; 'mirrored' uses all local GPUs, or `devices` if given, or
  `cpu_replicas` logical CPU devices (multi-replica runs, e.g. global negatives, on a CPU-only
  machine); 'multi_worker_mirrored' reads TF_CONFIG; 'default' is the no-op strategy."""
  if name not in STRATEGIES:
    raise ValueError(f"train.strategy must be one of {STRATEGIES}, got {name!r}")
  if cpu_replicas and name != "mirrored":
    raise ValueError(f"train.cpu_replicas needs train.strategy='mirrored', got {name!r}")
  if name == "default":
    return tf.distribute.get_strategy()
  if cpu_replicas:
    return tf.distribute.MirroredStrategy(devices=split_cpu(int(cpu_replicas)))
  if name == "mirrored" and devices:
    return tf.distribute.MirroredStrategy(devices=list(devices))
  if name == "tpu" and tpu_address is None:
    raise ValueError("train.strategy='tpu' needs train.tpu_address (or --tpu): '' or 'local' "
                     "on a TPU VM, else the TPU name or grpc:// address")
  return distribute_utils.get_distribution_strategy(
      distribution_strategy=name, num_gpus=len(tf.config.list_physical_devices("GPU")),
      tpu_address=tpu_address)


def is_chief(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type in (None, "chief"):
    return True
  cluster = resolver.cluster_spec().as_dict()
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def is_multi_worker(strategy):
  """True for strategies spanning several worker processes (MultiWorkerMirrored)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
    return False
  return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def write_dir(model_dir, strategy):
  """Chief writes to model_dir; other workers to a scratch dir (saving is collective)."""
  if is_chief(strategy):
    return model_dir
  resolver = strategy.cluster_resolver
  return os.path.join(model_dir, ".workers", f"{resolver.task_type}_{resolver.task_id}")


def initialise_devices_quietly():
  """Lists the devices (TensorFlow initialises them on first use) with one line of its stderr
  dropped: the CUDA build of TensorFlow logs "failed call to cuInit" on every machine
  without a GPU. Every other line it writes meanwhile is passed on. Call it in a command
  line's `if __name__ == "__main__":` block, before absl or anything else touches a device."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      tf.config.list_physical_devices()
    finally:
      os.dup2(saved, 2)
      os.close(saved)
    captured.seek(0)
    for line in captured.read().decode(errors="replace").splitlines(keepends=True):
      if "failed call to cuInit" not in line:
        sys.stderr.write(line)
  sys.stderr.flush()
