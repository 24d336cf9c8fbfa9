"""cola_tf: COLA contrastive audio pretraining in TensorFlow 2 (tf_keras, gin, tf.distribute)."""

import os

__version__ = "0.1.0"
# cola_tf runs on tf_keras (Keras 2). Unless the caller chose otherwise, TensorFlow's tf.keras
# is tf_keras too, so starting TensorFlow does not also import Keras 3 (~1.5 s a process on 2
# cores). It takes effect where cola_tf is imported before TensorFlow (every command line).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ INFO lines at start-up (oneDNN, CPU instructions, "no CUDA drivers": 4-5
# lines on every command and each child process) are off unless the caller set a level;
# warnings and errors still show. TF_CPP_MIN_LOG_LEVEL=0 brings them back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# The recipe's sample rate: clips are decoded and resampled to it, pcm16 records are stored at
# it, and the export, HEAR module and probes expect it. The one place it is stated.
SAMPLE_RATE = 16000
