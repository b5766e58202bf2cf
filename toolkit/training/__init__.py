"""Training: the tutorial data, the tf.Module model, the train loop, the run folder, plots."""
