"""A TensorFlow-Serving-compatible model server (`python -m serving`).

Independent of tfkit's training code: it serves any SavedModel (or
`model.tflite` with --prefer_tflite_model) laid out as TF Serving expects.
"""

__version__ = "0.1.0"
