"""AdamW + linear warmup + cosine from Model Garden's factory."""
import numpy as np
import pytest
import tensorflow as tf

from cola_tf.runtime import optimization


def test_schedule_at_warmup_peak_and_end():
  opt, schedule = optimization.build_adamw(total_steps=1000, steps_per_epoch=20,
                                           learning_rate=1e-3, warmup_epochs=5)
  assert float(schedule(0)) == 0.0
  assert float(schedule(50)) == pytest.approx(5e-4, rel=1e-5)  # half way up the warmup
  assert float(schedule(100)) == pytest.approx(1e-3, rel=1e-5)  # peak after 5 epochs
  assert float(schedule(550)) == pytest.approx(5e-4, rel=1e-4)  # cosine half way down
  assert float(schedule(1000)) == pytest.approx(0.0, abs=1e-9)  # reaches the end exactly
  values = [float(schedule(s)) for s in range(100, 1001, 50)]
  assert all(a > b for a, b in zip(values, values[1:]))  # strictly decaying, not constant


def test_recipe_batch_scaling_and_end_fraction():
  _, schedule = optimization.build_adamw(total_steps=500, steps_per_epoch=10,
                                         learning_rate=1e-3, reference_batch_size=256,
                                         global_batch_size=2048, warmup_steps=0,
                                         end_learning_rate_fraction=0.1)
  assert float(schedule(0)) == pytest.approx(8e-3, rel=1e-5)
  assert float(schedule(500)) == pytest.approx(8e-4, rel=1e-4)


def test_optimizer_uses_the_schedule_and_skips_decay_on_norms_and_biases():
  opt, schedule = optimization.build_adamw(total_steps=10, steps_per_epoch=10,
                                           learning_rate=0.1, warmup_steps=2, weight_decay=0.5)
  kernel = tf.Variable(np.ones((2, 2), np.float32), name="dense/kernel")
  bias = tf.Variable(np.ones(2, np.float32), name="dense/bias")
  gamma = tf.Variable(np.ones(2, np.float32), name="layer_norm/gamma")
  zero = [tf.zeros_like(v) for v in (kernel, bias, gamma)]
  for _ in range(3):
    opt.apply_gradients(zip(zero, [kernel, bias, gamma]))
  lrs = [float(schedule(s)) for s in range(3)]  # 0, 0.05, 0.1
  np.testing.assert_allclose(kernel.numpy(), np.prod([1 - lr * 0.5 for lr in lrs]), rtol=1e-5)
  np.testing.assert_array_equal(bias.numpy(), 1.0)
  np.testing.assert_array_equal(gamma.numpy(), 1.0)


def test_warmup_as_long_as_the_run_becomes_a_tenth_of_it_with_a_note(capsys):
  """A short run of a config made for a longer one (tiny.gin's 20 warmup steps, 20 steps)."""
  _, schedule = optimization.build_adamw(total_steps=20, steps_per_epoch=10, warmup_steps=20,
                                         learning_rate=1e-3)
  assert "warming up over 2 steps, a tenth of the run" in capsys.readouterr().out
  assert float(schedule(1)) == pytest.approx(5e-4) and float(schedule(2)) == pytest.approx(1e-3)
  _, schedule = optimization.build_adamw(total_steps=5, steps_per_epoch=10, warmup_epochs=2)
  assert float(schedule(0)) == pytest.approx(1e-3)  # 5 // 10 = 0: no warmup
  with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
    optimization.build_adamw(total_steps=10, steps_per_epoch=10, warmup_steps=-1)


def test_old_name_of_reference_batch_size_is_read_with_a_note(capsys):
  _, schedule = optimization.build_adamw(total_steps=500, steps_per_epoch=10,
                                         learning_rate=1e-3, batch_size_scaling=256,
                                         global_batch_size=2048, warmup_steps=0)
  assert float(schedule(0)) == pytest.approx(8e-3, rel=1e-5)
  assert "batch_size_scaling is now build_adamw.reference_batch_size" in capsys.readouterr().out
  with pytest.raises(ValueError, match="old name of reference_batch_size"):
    optimization.build_adamw(total_steps=500, steps_per_epoch=10, reference_batch_size=128,
                             batch_size_scaling=256, global_batch_size=2048, warmup_steps=0)
