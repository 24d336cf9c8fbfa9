"""The frozen encoder handed to the benchmark world: the SavedModel (`frozen_encoder`), its
`cola_metadata.json` (`metadata`, the one reader/writer, light enough for hear_module) and the
fast one-pass frame embeddings (`encoder_frames`), audax's checkpoints mapped onto our model
(`from_audax`) and how the commands writing an export end (`command`). `python -m
cola_tf.export` is its command line (`__main__`). Nothing is imported here: hear_module reads `metadata` without the rest."""
