"""Stage 1, prepare: the tiny world (when used), tokenized and split corpora, the base model's per-token
signals (entropy cache) and the training plan. Everything here is computed once per experiment and cached
under `runs_dir`; later stages read it and never recompute it."""
