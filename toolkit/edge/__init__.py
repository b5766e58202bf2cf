"""The device checker, `tfkit-edge`: checks TFLite files against a golden file where only numpy and
LiteRT are installed (no TensorFlow, no gRPC, no click), with the rules of `tfkit check`."""
