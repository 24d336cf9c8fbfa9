"""cola_tf: COLA contrastive audio pretraining in TensorFlow 2 (tf_keras, gin, tf.distribute)."""

__version__ = "0.1.0"
