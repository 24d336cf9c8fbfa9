"""cola_tf: COLA contrastive audio pretraining in TensorFlow 2 (tf_keras, gin, tf.distribute)."""

__version__ = "0.1.0"
# The recipe's sample rate: clips are decoded and resampled to it, pcm16 records are stored at
# it, and the export, HEAR module and probes expect it. The one place it is stated.
SAMPLE_RATE = 16000
