"""cola_tf: COLA contrastive audio pretraining in TensorFlow 2, with a HEAR-API module."""
from setuptools import find_packages, setup

setup(
    name="cola_tf",
    version="0.1.0",
    description="COLA contrastive audio pretraining (TF2, tf_keras, gin, tf.distribute) "
                "with a HEAR-API module",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["cola_tf", "cola_tf.*", "hear_module", "hear_module.*"])
    + ["cola_tf.gin"],
    # The checkout's top-level gin/ ships as cola_tf/gin/ (configs found by name).
    package_dir={"cola_tf.gin": "gin"},
    package_data={"cola_tf.gin": ["*.gin", "*/*.gin"]},
    install_requires=[
        "tensorflow==2.20.*",
        "tf-keras~=2.20.0",
        "tf-models-official==2.20.*",
        "gin-config>=0.5.0",
        "numpy>=2.0",
        "scipy>=1.10",
        "soundfile>=0.12",
        "absl-py>=1.0",
        "matplotlib>=3.7",  # linear-probe confusion matrix and experiment plots (PNG)
        "msgpack>=1.0",  # audax (flax) checkpoints: cola_tf.import_audax, 1.7 MB, no jax
    ],
    extras_require={
        # The HEAR harness (heareval's runners, hear-validator) and the torch-suite adapters
        # (hear_module.torch_suites). heareval 2021.1.3 and hearvalidator 2021.0.6 themselves
        # pin numpy 1.19 / numba 0.48 / Python < 3.9 yet run with these: install them with
        # --no-deps afterwards (scripts/setup.sh does). torch 2.13.0: the CPU wheel here.
        "hear": [
            "torch==2.13.0",
            "pytorch-lightning==1.8.6",
            "setuptools<81",
            "click", "dcase-util", "intervaltree", "more-itertools", "pandas", "pynvml",
            "python-slugify", "scikit-learn", "sed_eval", "torchinfo", "tqdm",
            "loguru",  # X-ARES's encoder check
            # The torch suites' runners (hear_module.torch_suites.s3prl_run / xares_run):
            # torchaudio's index wheels are CUDA builds (torchaudio_compat loads their Python
            # side beside the CPU torch); s3prl and xares go in with --no-deps (setup.sh):
            # s3prl's metadata pulls huggingface_hub >= 1, which its runner cannot import.
            "torchaudio==2.11.1", "huggingface_hub==0.36.2", "tensorboardX",
            "webdataset==1.0.2", "braceexpand", "pytorch-ignite==0.5.5",
        ],
        # Native FLAC/MP3/OGG ops; they fail to load on TF 2.20, so never required.
        "tfio": ["tensorflow-io==0.37.1"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", "filelock>=3.12", "ruff>=0.6"],
    },
)
