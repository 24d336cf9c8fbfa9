"""small_cnn: a light VGG-style CNN that trains usefully on 2 CPU cores (tiny.gin, the
generated-speech experiment)."""
import numpy as np
import tf_keras

from cola_tf.encoders.layers import DropPath
from cola_tf.encoders.layers import log_mel_input
from cola_tf.encoders.layers import pool

layers = tf_keras.layers


def small_cnn(input_shape, pooling="max", channels=(24, 48, 96, 192), drop_path_rate=0.0):
  """A stride-2 Conv3x3 stem, then stages of MaxPool -> Conv3x3-BN-ReLU -> residual 1x1
  conv branch with DropPath. ~180 pairs/s for a COLA step at batch 64 on 2 CPU cores."""
  inputs, x = log_mel_input(input_shape)
  rates = np.linspace(0.0, drop_path_rate, len(channels))
  for i, ch in enumerate(channels):
    if i > 0:
      x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = layers.Conv2D(ch, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False,
                      name=f"block{i}_conv")(x)
    x = layers.BatchNormalization(name=f"block{i}_bn")(x)
    x = layers.ReLU(name=f"block{i}_relu")(x)
    if i > 0:
      y = layers.Conv2D(ch, 1, use_bias=False, name=f"block{i}_mix")(x)
      y = layers.BatchNormalization(name=f"block{i}_mix_bn")(y)
      y = DropPath(rates[i], name=f"block{i}_drop_path")(y)
      x = layers.ReLU(name=f"block{i}_relu2")(layers.Add(name=f"block{i}_add")([x, y]))
  features = pool(x, pooling, "pool")
  return tf_keras.Model(inputs, features, name="small_cnn")
