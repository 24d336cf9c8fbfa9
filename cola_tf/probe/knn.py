"""kNN top-1 on frozen embeddings: the instance-discrimination / DINO evaluation.

Cosine similarity between each query and every memory-bank embedding; the k most similar
vote for their class with weight exp(similarity / temperature) (Wu et al. 2018, DINO's
`knn_classifier`), and the class with the largest summed weight is the prediction.
Queries are scored `chunk` at a time, so memory is chunk x bank, not queries x bank.
"""
import numpy as np
import tensorflow as tf


def knn_predict(bank, bank_labels, queries, num_classes, k=20, temperature=0.07, chunk=1024):
  """Predicted class [num_queries] (int32) of each query row among `bank` [n, D] rows."""
  if k < 1 or temperature <= 0:
    raise ValueError(f"kNN needs k >= 1 and temperature > 0, got k={k}, "
                     f"temperature={temperature}")
  bank = tf.math.l2_normalize(tf.constant(bank, tf.float32), axis=-1)
  labels = tf.constant(bank_labels, tf.int32)
  k = min(int(k), int(bank.shape[0]))
  out = []
  for start in range(0, len(queries), chunk):
    q = tf.math.l2_normalize(tf.constant(queries[start:start + chunk], tf.float32), axis=-1)
    similarity, nearest = tf.math.top_k(tf.matmul(q, bank, transpose_b=True), k=k)
    weights = tf.exp(similarity / temperature)
    votes = tf.reduce_sum(tf.one_hot(tf.gather(labels, nearest), num_classes)
                          * weights[..., None], axis=1)
    out.append(tf.argmax(votes, axis=-1, output_type=tf.int32).numpy())
  return np.concatenate(out) if out else np.zeros([0], np.int32)


def knn_top1(train, test, num_classes, k=20, temperature=0.07):
  """Top-1 accuracy of `test` (features, labels) against the `train` memory bank."""
  predictions = knn_predict(train[0], train[1], test[0], num_classes, k, temperature)
  return float(np.mean(predictions == np.asarray(test[1])))
