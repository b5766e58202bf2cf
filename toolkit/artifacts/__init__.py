"""Artifacts: TF Serving version folders (export, layout), TFLite conversion, inspection."""
