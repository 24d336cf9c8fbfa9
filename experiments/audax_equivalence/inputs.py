"""The audax-equivalence fixtures' inputs and sizes, regenerated on both sides (numpy only):
`make_fixtures.py` (audax's code, scratch environment) and `tests/test_audax_equivalence.py`
(ours) draw the same waveforms and log-mel batches from these seeds instead of storing them;
the fixture records a digest of the waveforms so a drift in numpy's generator is caught."""
import hashlib

import numpy as np

INIT_SEED = 0  # jax.random.PRNGKey of audax's create_train_state
INPUT_SEED = 1
STEP_SEED = 2
PAIRS = 4  # anchors and positives: a batch of 8 crops, as audax's COLA takes them
CROP_SAMPLES = 15360  # 0.96 s at 16 kHz: 100 frames
EMBEDDING_DIM = 64  # the head of the fixtures (the recipe: 512)
# Small encoders of the published families (CI fixtures): ConvNeXt depths/dims, and
# EfficientNet's (width, depth) multipliers over B0's blocks (torchvision's = Keras' rounding).
SMALL_CONVNEXT = {"depths": (1, 1, 2, 1), "dims": (16, 24, 32, 40)}
SMALL_EFFICIENTNET = (0.25, 0.5)
STANDARDISED = {"convnext": False, "efficientnet": True}  # audax's `normalize_batch`
# The recipe's per-256 learning rates and weight decays; 'warmupcosine' over EPOCHS epochs
# of STEPS_PER_EPOCH steps, WARMUP_EPOCHS of them warmup: 10 steps at nonzero rates.
RATES = {"convnext": (1e-3, 0.005), "efficientnet": (5e-5, 1e-6)}
STEPS, STEPS_PER_EPOCH, EPOCHS, WARMUP_EPOCHS = 10, 2, 10, 1
RECORDED_STEPS = (2, 10)  # step 1 runs at rate 0 (both warmups start there): 2 is the first


def waveform_pairs():
  """[2 * PAIRS, CROP_SAMPLES] float32: anchors then positives, speech-like (harmonics with
  a moving pitch, noise, different gains: the L2 normalisation has work to do)."""
  rng = np.random.default_rng(INPUT_SEED)
  t = np.arange(CROP_SAMPLES) / 16000.0
  out = []
  for i in range(2 * PAIRS):
    f0 = 100.0 + 40.0 * i + 30.0 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000.0
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t + i)) + 0.1 * rng.standard_normal(t.size)
    out.append((0.01 + 0.3 * i) * x)
  return np.asarray(out, np.float32)


def step_batch(step):
  """(anchors, positives) log-mel batches [PAIRS, 100, 64] float32 of training step `step`:
  log-mel-like values (around -5, spread 2) with shared structure between a pair."""
  rng = np.random.default_rng([STEP_SEED, step])
  shared = rng.standard_normal((PAIRS, 100, 64))
  anchors = -5.0 + 2.0 * (shared + 0.5 * rng.standard_normal(shared.shape))
  positives = -5.0 + 2.0 * (shared + 0.5 * rng.standard_normal(shared.shape))
  return anchors.astype(np.float32), positives.astype(np.float32)


def digest(array):
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).digest()
# The bf16 forward's ConvNeXt layer scales (see make_fixtures._layer_scales_set).
BFLOAT16_LAYER_SCALE = 0.5
