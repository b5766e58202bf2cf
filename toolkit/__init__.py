"""tfkit: train, export, serve and prove parity of TensorFlow models."""

__version__ = "0.1.0"
