"""The heareval side: HEAR tasks in hear-preprocess's layout (`tasks`: write, find, resample,
scores), the heareval driver (`harness`) and its child processes (`process`). The HEAR API
itself, over an export, is the top-level `hear_module`; `python -m cola_tf.hear_eval` is the
command line."""
