"""Patches a checkout of audax (github.com/SarthakYadav/audax @ 91bfde5) for today's jax, flax
and optax: API drift only, nothing the recipe computes. Usage: python patch_audax.py AUDAX_DIR

Each patch (file, old text, new text, why) is listed in PATCHES and in
docs/audax_equivalence.md; a patch whose old text is missing fails with its name, so a
different audax commit is noticed instead of half-patched.
"""
import pathlib
import sys

_OPTIONAL = ("try:\n    import {0} as {1}\nexcept ImportError:  # not needed by the steps we call\n"
             "    {1} = None\n")
PATCHES = (
    # flax.optim is gone; DynamicScale lives in flax.training.dynamic_scale.
    ("audax/training_utils/training_utilities.py", "from flax import optim\n",
     "from flax.training import dynamic_scale as optim\n"),
    ("audax/training_utils/train_contrastive.py", "from flax import optim\n",
     "from flax.training import dynamic_scale as optim\n"),
    ("audax/training_utils/trainstate.py", "dynamic_scale: flax.optim.DynamicScale",
     "dynamic_scale: Any"),
    # jax.tree_map / jax.tree_multimap are gone.
    ("audax/training_utils/train_contrastive.py", "jax.tree_multimap(", "jax.tree_util.tree_map("),
    ("audax/training_utils/training_utilities.py", "jax.tree_map(", "jax.tree_util.tree_map("),
    # jnp.clip's a_min / a_max keywords are gone.
    ("audax/training_utils/training_utilities.py", "jnp.clip(output, a_min=1e-8, a_max=1e8)",
     "jnp.clip(output, min=1e-8, max=1e8)"),
    # flax's apply wants a plain dict of PRNG keys, not a FrozenDict.
    ("audax/training_utils/train_contrastive.py", "rngs=state.aux_rng_keys",
     "rngs=dict(state.aux_rng_keys)"),
    # The training script's logging/plotting imports (TensorFlow, clu, wandb, sklearn) are not
    # needed by train_step / create_train_state: optional.
    ("audax/training_utils/train_contrastive.py", "import wandb\n", _OPTIONAL.format("wandb", "wandb")),
    ("audax/training_utils/train_contrastive.py",
     "from clu import metric_writers\nfrom clu import periodic_actions\n", ""),
    ("audax/training_utils/train_contrastive.py", "import tensorflow as tf\n",
     _OPTIONAL.format("tensorflow", "tf")),
    ("audax/training_utils/train_contrastive.py", "from .data_v2.helpers import prepare_datasets_v2\n", ""),
    ("audax/training_utils/train_contrastive.py", "from sklearn.metrics import average_precision_score\n", ""),
    ("audax/training_utils/training_utilities.py", "from sklearn.metrics import average_precision_score\n", ""),
)


def main(root):
  root = pathlib.Path(root)
  for relative, old, new in PATCHES:
    path = root / relative
    text = path.read_text()
    if old not in text:
      if new and new in text:
        continue  # patched already
      sys.exit(f"patch_audax: {relative}: expected {old.strip()!r}; is this audax @ 91bfde5?")
    path.write_text(text.replace(old, new))
  print(f"patch_audax: {len(PATCHES)} patches applied to {root}")


if __name__ == "__main__":
  main(sys.argv[1])
