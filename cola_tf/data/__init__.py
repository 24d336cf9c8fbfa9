"""Audio sources, decoding and the COLA pair pipeline."""
