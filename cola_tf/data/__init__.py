"""Audio sources, decoding and the COLA pair pipeline.

Importing the package registers every built-in source (`sources.SOURCES`), the embedded
synthetic corpus included, so the registry is complete whatever module is imported first.
"""
from cola_tf.data import sources  # noqa: F401
from cola_tf.data import synthetic  # noqa: F401
from cola_tf.data import tfds_source  # noqa: F401
from cola_tf.data import tfrecord_source  # noqa: F401
