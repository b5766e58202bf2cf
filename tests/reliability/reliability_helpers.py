"""Names shared by the reliability tests."""

# The model name the shared export (tests/conftest.py) and every server here use.
MODEL = "logreg"
