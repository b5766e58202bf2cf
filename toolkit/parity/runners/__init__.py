"""One module per runtime behind one interface (`base.Runner`): `eager.EagerRunner`,
`grpc.GrpcRunner`, `rest.RestRunner`, `tflite.TFLiteRunner`. Import the module you
need; none imports TensorFlow at module level."""
