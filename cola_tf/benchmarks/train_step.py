r"""COLA train-step and encoder throughput for one encoder / precision / XLA setting.

  python -m cola_tf.benchmarks.train_step --encoder efficientnet_b0 [--batch 32]
      [--precision float32|mixed_bfloat16] [--jit] [--frames 100] [--threads N]
      [--variant LABEL] [--style audax|keras]

Times the real train step (encoder on anchors and positives, projection head, bilinear
similarity, InfoNCE, AdamW update) on random log-mel input already in memory, so the input
pipeline is excluded; prints pairs/s (median of --repeats timed loops of --steps steps after
a warm-up), encoder-only inference clips/s, forward FLOPs per clip and achieved FLOP/s.
`--threads N` sets TF's intra- and inter-op threads (must be set before TF starts).
`--variant LABEL` builds one of the encoder's registered benchmark variants
(`cola_tf.encoders.ENCODERS[name].variants`: ConvNeXt's `float32_blocks`, audax's precision
scope, and `grouped`, keras.applications' grouped depthwise conv) at its precision.
"""
import argparse
import json
import statistics
import time
from cola_tf import logs


def forward_flops(encoder, input_shape):
  """FLOPs of one clip's encoder forward pass, from TF's graph profiler."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorflow.python.framework import convert_to_constants  # pylint: disable=import-outside-toplevel
  fn = tf.function(lambda x: encoder(x, training=False)).get_concrete_function(
      tf.TensorSpec((1,) + tuple(input_shape), tf.float32))
  frozen = convert_to_constants.convert_variables_to_constants_v2(fn)
  options = (tf.compat.v1.profiler.ProfileOptionBuilder(
      tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build())
  return tf.compat.v1.profiler.profile(graph=frozen.graph, options=options).total_float_ops


def run(encoder_name, batch=32, precision="float32", jit=False, frames=100, steps=5, repeats=3,
        variant=None, style=None):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  from cola_tf import encoders  # pylint: disable=import-outside-toplevel
  from cola_tf import model as model_lib  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import optimization  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import trainer as trainer_lib  # pylint: disable=import-outside-toplevel

  kwargs = dict(encoders.ENCODERS[encoder_name].variants[variant]) if variant else {}
  precision = kwargs.pop("precision", precision)
  tf_keras.mixed_precision.set_global_policy(precision)
  shape = (frames, 64)
  kwargs.update({"style": style} if style else {})
  encoder = encoders.build_encoder(encoder_name, input_shape=shape, **kwargs)
  model = model_lib.ColaModel(encoder=encoder).build_for(shape)
  optimizer, _ = optimization.build_adamw(1000, 100, learning_rate=1e-4, warmup_steps=10,
                                          weight_decay=1e-4)
  rng = tf.random.Generator.from_seed(0)
  anchors = rng.normal((batch,) + shape)
  positives = rng.normal((batch,) + shape)

  # The trainer's own step (cola_tf.runtime.trainer.ColaTrainer) on one fixed batch.
  dataset = tf.data.Dataset.from_tensors({"anchor": anchors, "positive": positives}).repeat()
  cola = trainer_lib.ColaTrainer(tf.distribute.get_strategy(), model, optimizer, dataset,
                                 "replica", batch, jit)

  def step_fn():
    return cola.train(tf.constant(1, tf.int32))["loss"]

  @tf.function(jit_compile=jit)
  def embed(x):
    return encoder(x, training=False)

  def timed(fn, count):
    fn()  # warm-up (tracing, compilation, allocation)
    rates = []
    for _ in range(repeats):
      started = time.perf_counter()
      for _ in range(steps):
        out = fn()
      float(tf.reduce_sum(tf.cast(out, tf.float32)))  # wait for the device
      rates.append(steps * count / (time.perf_counter() - started))
    return statistics.median(rates)

  pairs = timed(step_fn, batch)
  clips = timed(lambda: embed(anchors), batch)
  tf_keras.mixed_precision.set_global_policy("float32")
  flops = forward_flops(encoders.build_encoder(encoder_name, input_shape=shape, **kwargs), shape)
  # A train step runs the forward on 2 crops per pair and a backward of ~2x the forward.
  achieved = pairs * 2 * 3 * flops
  label = ", ".join(v for v in (variant, style and f"{style} style") if v)
  return {"encoder": encoder_name + (f" ({label})" if label else ""),
          "batch": batch, "precision": precision, "jit": jit, "frames": frames,
          "train_pairs_per_s": pairs, "embed_clips_per_s": clips,
          "forward_gflops_per_clip": flops / 1e9, "train_gflops_per_s": achieved / 1e9}


def keras_fit_pairs_per_s(encoder_name, batch=32, frames=98, steps=5, repeats=3):
  """The same COLA step as a plain tf_keras compile()+fit() loop (the issue's reference loop).

  Measured next to run()'s custom loop in the same process settings so the two can be
  compared on one machine: a faster fit() would mean our loop leaves speed on the table.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  from cola_tf import encoders  # pylint: disable=import-outside-toplevel
  from cola_tf import model as model_lib  # pylint: disable=import-outside-toplevel

  shape = (frames, 64)

  class FitCola(tf_keras.Model):
    def __init__(self):
      super().__init__()
      self.cola = model_lib.ColaModel(encoder=encoders.build_encoder(encoder_name,
                                                                     input_shape=shape))

    def train_step(self, data):
      anchors, positives = data
      with tf.GradientTape() as tape:
        z = self.cola.embed(tf.concat([anchors, positives], 0), training=True)
        loss = tf.reduce_mean(model_lib.contrastive_loss(
            self.cola.logits(z[:batch], z[batch:])))
      self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
      return {"loss": loss}

  model = FitCola()
  model.cola.build_for(shape)
  model.compile(optimizer=tf_keras.optimizers.AdamW(1e-4, weight_decay=1e-4))
  rng = tf.random.Generator.from_seed(0)
  pair = (rng.normal((batch,) + shape), rng.normal((batch,) + shape))
  data = tf.data.Dataset.from_tensors(pair).repeat()
  model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # warm-up: tracing
  rates = []
  for _ in range(repeats):
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    rates.append(steps * batch / (time.perf_counter() - started))
  return statistics.median(rates)


def matmul_peak_gflops(dtype="float32", n=2048, repeats=5):
  """Measured dense matmul throughput on this machine (the 'peak' FLOP/s are compared to)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  a = tf.random.normal((n, n), dtype=tf.float32)
  a = tf.cast(a, dtype)
  mm = tf.function(lambda: tf.matmul(a, a))
  mm()
  rates = []
  for _ in range(repeats):
    started = time.perf_counter()
    for _ in range(3):
      out = mm()
    float(tf.reduce_sum(tf.cast(out[:1, :1], tf.float32)))
    rates.append(3 * 2 * n ** 3 / (time.perf_counter() - started) / 1e9)
  return statistics.median(rates)


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--encoder", default="small_cnn")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
  p.add_argument("--jit", action="store_true")
  p.add_argument("--frames", type=int, default=100)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--variant", default=None,
                 help="one of the encoder's registered benchmark variants (its precision too)")
  p.add_argument("--style", default=None, choices=["audax", "keras"],
                 help="EfficientNet / ConvNeXt initialisers and layout (default: audax)")
  p.add_argument("--threads", type=int, default=0, help="intra = inter-op threads (0: TF's)")
  p.add_argument("--json", action="store_true", help="print one JSON line")
  p.add_argument("--keras_fit", action="store_true",
                 help="time a plain tf_keras compile()+fit() COLA loop instead (float32)")
  a = p.parse_args(argv)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if a.threads:
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
  if a.keras_fit:
    result = {"encoder": a.encoder, "batch": a.batch, "frames": a.frames,
              "keras_fit_pairs_per_s": keras_fit_pairs_per_s(a.encoder, a.batch, a.frames,
                                                             a.steps, a.repeats)}
  else:
    result = run(a.encoder, a.batch, a.precision, a.jit, a.frames, a.steps, a.repeats,
                 a.variant, a.style)
  result["threads"] = a.threads
  print(json.dumps(result) if a.json else result, flush=True)


if __name__ == "__main__":
  main()
