"""Reliability and security harness for the tfkit model server.

- `reference`: the expected answers of an exported logistic-regression version.
- `traffic`: one client's mixed gRPC/REST requests, each checked against the model.
- `soak`: bounded load (optionally with versions hot-swapped in) and its figures.
- `fuzz`: malformed gRPC and REST requests and the answers they must get.
- `faults`: ways to break a version folder on disk.

`python -m reliability soak|fuzz ...` runs the same traffic against any
`python -m serving` from outside; `scripts/soak` is the soak's front door.
"""
