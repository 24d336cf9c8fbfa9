r"""What the online evaluation costs: its share of training time, and its memory.

  python -m cola_tf.benchmarks.online_eval [--sections tiny,recipe,memory]
      [--encoders convnext_tiny,efficientnet_b0] [--clips 10000] [--every 1000]

* tiny: tiny.gin's run as shipped (online evaluation every 50 steps and at the start),
  in-process: evaluation seconds / training seconds.
* recipe: for each encoder, the evaluation of `--clips` clips of 1 s (embedding through the
  trainer's strategy path, then kNN and linear scoring) against `--every` train steps of
  the recipe's global batch at this machine's measured train-step speed (batch 32 pairs,
  `benchmarks.train_step`): the share at the recipe configs' evaluation interval.
* memory: the evaluation of `--clips` clips with the small CNN: the process's peak RSS
  before and after, and the size of the embeddings (float32, clips x D).
Figures are from this machine's CPU (printed first); a TPU's shares differ.
"""
import argparse
import resource
import sys
import tempfile
import time
from cola_tf import logs


def _tiny_share():
  import gin  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import configuration  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import training  # pylint: disable=import-outside-toplevel
  gin.clear_config()
  configuration.parse_gin(["tiny"], [], None)
  started = time.perf_counter()
  result = training.train(tempfile.mkdtemp(prefix="online_eval_tiny-"))
  total = time.perf_counter() - started
  gin.clear_config()
  return result["eval_seconds"], total


def _eval_set(clips, cache_dir):
  from cola_tf.probe import eval_sets  # pylint: disable=import-outside-toplevel
  per_identity = 10
  return eval_sets.SyntheticEvalSet(identities_per_kind=max(1, clips // (4 * per_identity)),
                                    clips_per_identity=per_identity, cache_dir=cache_dir)


def _evaluation_seconds(encoder_name, eval_set, repeats=1):
  """(seconds of one evaluation, embedding dim) on the default strategy, after a warm-up."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from cola_tf import encoders  # pylint: disable=import-outside-toplevel
  from cola_tf.probe import online as evaluation  # pylint: disable=import-outside-toplevel
  from cola_tf import frontend as frontend_lib  # pylint: disable=import-outside-toplevel
  encoder = encoders.build_encoder(encoder_name, input_shape=(100, 64), pooling="mean")
  ev = evaluation.OnlineEvaluation(eval_set=eval_set)
  ev.prepare(tf.distribute.get_strategy(), encoder, frontend_lib.LogMelFrontend(), 15360,
             tempfile.mkdtemp(prefix="online_eval-"), True)
  ev(0)  # warm-up: tracing, the input cache
  started = time.perf_counter()
  for step in range(repeats):
    ev(step + 1)
  return (time.perf_counter() - started) / repeats, int(encoder.output_shape[-1]), len(ev.paths)


def _peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--sections", default="tiny,recipe,memory")
  p.add_argument("--encoders", default="convnext_tiny,efficientnet_b0")
  p.add_argument("--clips", type=int, default=10000)
  p.add_argument("--every", type=int, default=1000, help="the recipe configs' interval")
  p.add_argument("--global_batch", type=int, default=2048)
  a = p.parse_args(argv)
  from cola_tf.benchmarks import input_pipeline  # pylint: disable=import-outside-toplevel
  from cola_tf.benchmarks import train_step  # pylint: disable=import-outside-toplevel
  print(f"machine: {input_pipeline.machine()}", flush=True)
  sections = set(a.sections.split(","))
  cache = tempfile.mkdtemp(prefix="online_eval_cache-")
  if "memory" in sections:
    before = _peak_rss_mb()
    seconds, dim, clips = _evaluation_seconds("small_cnn", _eval_set(a.clips, cache))
    print(f"memory: {clips} clips, small_cnn ({dim}-d): peak RSS {before:.0f} MB before, "
          f"{_peak_rss_mb():.0f} MB after the evaluation; embeddings {clips * dim * 4 / 2**20:.1f}"
          f" MB (float32); one evaluation {seconds:.1f} s", flush=True)
  if "tiny" in sections:
    eval_s, total = _tiny_share()
    print(f"tiny.gin (every 50 steps and at the start): evaluation {eval_s:.1f} s of a "
          f"{total:.1f} s run: {100 * eval_s / (total - eval_s):.1f}% of training time",
          flush=True)
  if "recipe" in sections:
    eval_set = _eval_set(a.clips, cache)
    for name in a.encoders.split(","):
      seconds, dim, clips = _evaluation_seconds(name, eval_set)
      pairs = train_step.run(name, batch=32, frames=100, steps=3, repeats=2)["train_pairs_per_s"]
      train_s = a.every * a.global_batch / pairs
      print(f"recipe, {name} ({dim}-d): evaluation of {clips} clips {seconds:.1f} s; "
            f"{a.every} steps of {a.global_batch} pairs at {pairs:.1f} pairs/s = "
            f"{train_s:.0f} s: {100 * seconds / train_s:.3f}% of training time", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
