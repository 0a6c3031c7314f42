"""Training runs: options, the run and model configs, checkpoints and their schema, the run
directory, interrupts, data-parallel training over MPI, evaluation and caption metrics, and
the trainer. ``fastcap.captioning_solver`` (the CS231n path) belongs here too."""
