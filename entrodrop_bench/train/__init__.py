"""Stage 2, train: one training loop (`trainer.Trainer`) per (run, seed), with the regularizer plugin's hooks,
checkpoints every target epoch, the validation curve and the run status. Reads only what `prepare` wrote."""
