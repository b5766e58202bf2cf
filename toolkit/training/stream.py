"""Training data of any size, streamed with tf.data: CSV or TFRecord shards, or an NPZ.

`--data` names one file, a glob or a folder of shards, on any filesystem that
`tf.io.gfile` opens (local, gs://, s3:// ...). CSV shards have a header row;
TFRecord shards hold `tf.Example`s with one float feature per column plus the
label (float or int64). An NPZ is read whole, as before: it is one array file.

Shards are read in chunks of CHUNK_ROWS lines or records, interleaved in
parallel, parsed in parallel a chunk at a time (vectorised: one regex per line
decides whether a CSV row is well formed, so a bad row never stops the
pipeline) and prefetched. Memory is bounded by the chunk, shuffle and batch
sizes, never by the number of rows.

Every chunk is a dict of tensors, one entry per non-blank row:
  x   float32 [n, D]  features (zeros where the row is bad)
  y   float32 [n]     labels
  ok  bool [n]        the row is well formed, its features finite, its label 0 or 1
  row int64 [n]       shard index << SHARD_BITS | line (CSV) or record (TFRecord) number,
                      or the row index (NPZ): where to point a user at a bad row
  fp  int64 [n]       a fingerprint of the row's values: decides its side of the held-out
                      split (the same on every run, worker and file format) and sums to the data hash
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from toolkit.errors import InputError
from toolkit.tfenv import import_tf
from toolkit.training import data as datamod

CSV_SUFFIXES = (".csv",)
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")
# Lines or records per chunk: large enough that per-element tf.data overhead is
# small against the parse, small enough to keep memory flat.
CHUNK_ROWS = 4096
# Shards read at once; more buys nothing on a couple of cores.
CYCLE_LENGTH = 4
SHARD_BITS = 40
# The held-out split: a row is held out when its fingerprint mod SPLIT_BUCKETS < fraction * SPLIT_BUCKETS.
SPLIT_BUCKETS = 1_000_000
# Held-out and training rows kept in the run folder (heldout.npz, train.npz) for the
# parity check, int8 calibration and plots: the first this many of each, in shard order.
# Without --test-fraction (--eval-data), every row is on the training side.
SAMPLE_ROWS = 10_000

NUMBER = r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:nan|inf|infinity))"
# A cell tf.io.decode_csv parses as a float (it rejects spaces around a quoted number).
CELL = rf'(?:"{NUMBER}"|[ \t]*{NUMBER}[ \t]*)'
_GLOB_CHARS = re.compile(r"[*?\[]")
# An NPZ's labels are its `labels` array, whatever --label-column says.
NPZ_LABELS = "labels"


@dataclass(frozen=True)
class Source:
    """Resolved training data: its shards, format and columns."""

    pattern: str  # as the user gave it
    option: str  # the option that named it (--data, --eval-data), for messages
    format: str  # "csv", "tfrecord" or "npz"
    shards: tuple[str, ...]
    columns: tuple[str, ...]  # CSV: header order; TFRecord: feature keys, sorted
    label_column: str
    header_lines: tuple[int, ...] = ()  # CSV: the header's line number in each shard
    label_dtype: str = "float32"  # TFRecord: how the label is stored
    arrays: datamod.Dataset | None = None  # NPZ: the whole file

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c != self.label_column)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def describe(self) -> str:
        """One phrase for training.json and messages: what was read."""
        if len(self.shards) == 1:
            return self.shards[0]
        return f"{self.pattern} ({len(self.shards)} {self.format} shards)"

    def location(self, row: int) -> str:
        """'FILE: line N' (or record N, row N) of a chunk's `row` id."""
        shard, number = divmod(int(row), 1 << SHARD_BITS)
        unit = {"csv": "line", "tfrecord": "record", "npz": "row"}[self.format]
        return f"{self.shards[shard]}: {unit} {number}"


# -- finding the shards and their columns ----------------------------------------------------------
def open_source(pattern: str, label_column: str = "label", option: str = "--data") -> Source:
    """Resolve `pattern` to shards and read their columns; every problem is an InputError naming the file."""
    shards = _resolve(str(pattern), option)
    kinds = {_format_of(s) for s in shards}
    if None in kinds:
        odd = next(s for s in shards if _format_of(s) is None)
        raise InputError(
            f"{option} {odd}: unsupported data format {PurePosixPath(odd).suffix or '(no extension)'!r}; "
            "use .csv, .tfrecord or .npz"
        )
    if len(kinds) > 1:
        raise InputError(f"{option} {pattern}: mixes {' and '.join(sorted(kinds))} files; give one format")
    kind = kinds.pop()
    if kind == "npz":
        if len(shards) > 1:
            raise InputError(f"{option} {pattern}: matches {len(shards)} .npz files; an NPZ is read whole, give one")
        arrays = datamod.load(shards[0])
        if NPZ_LABELS in arrays.feature_names:
            raise InputError(f"{shards[0]}: a feature is named {NPZ_LABELS!r}, like the labels array; rename it")
        return Source(
            str(pattern), option, kind, tuple(shards), arrays.feature_names + (NPZ_LABELS,), NPZ_LABELS, arrays=arrays
        )
    if kind == "csv":
        header_lines, columns = _csv_schema(shards, label_column)
        return Source(str(pattern), option, kind, tuple(shards), columns, label_column, header_lines=header_lines)
    columns, label_dtype = _tfrecord_schema(shards, label_column)
    return Source(str(pattern), option, kind, tuple(shards), columns, label_column, label_dtype=label_dtype)


def _resolve(pattern: str, option: str) -> list[str]:
    gfile = import_tf().io.gfile
    try:
        if _GLOB_CHARS.search(pattern):
            shards = sorted(p for p in gfile.glob(pattern) if not gfile.isdir(p))
            if not shards:
                raise InputError(f"{option} {pattern}: no files match this pattern")
            return shards
        if gfile.isdir(pattern):
            names = sorted(n.rstrip("/") for n in gfile.listdir(pattern))
            shards = [
                f"{pattern.rstrip('/')}/{n}"
                for n in names
                if not n.startswith((".", "_")) and _format_of(n) in ("csv", "tfrecord")
            ]
            if not shards:
                raise InputError(f"{option} {pattern}: folder holds no .csv or .tfrecord shards")
            return shards
        if not gfile.exists(pattern):
            raise InputError(f"{option} {pattern}: no such file")
    except import_tf().errors.OpError as exc:
        raise InputError(f"{option} {pattern}: cannot list ({first_line(exc)})") from None
    return [pattern]


def _format_of(path: str):
    name = PurePosixPath(path).name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(TFRECORD_SUFFIXES):
        return "tfrecord"
    if name.endswith(".npz"):
        return "npz"
    return None


def _csv_schema(shards: list[str], label_column: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Each shard's header line number, and the columns, the same in every shard."""
    header_lines, first = [], None
    for shard in shards:
        line, columns = _csv_header(shard)
        if first is None:
            first = columns
            _check_columns(shard, line, columns, label_column)
        elif columns != first:
            raise InputError(
                f"{shard}: line {line}: columns ({', '.join(columns)}) differ from those of the first "
                f"shard {shards[0]} ({', '.join(first)})"
            )
        header_lines.append(line)
    return tuple(header_lines), first


def _csv_header(shard: str) -> tuple[int, tuple[str, ...]]:
    """The first non-blank line of a CSV shard, as column names, with its line number."""
    tf = import_tf()
    try:
        with tf.io.gfile.GFile(shard, "rb") as f:
            for number, raw in enumerate(f, start=1):
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace")
                if text.strip():
                    return number, tuple(name.strip() for name in text.rstrip("\r\n").split(","))
    except tf.errors.OpError as exc:
        raise InputError(f"{shard}: cannot read ({first_line(exc)})") from None
    raise InputError(f"{shard}: file is empty")


def _check_columns(shard: str, line: int, columns: tuple[str, ...], label_column: str) -> None:
    if label_column not in columns:
        raise InputError(
            f"{shard}: no label column {label_column!r} in the header (columns: {', '.join(columns)}); "
            "use --label-column"
        )
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        raise InputError(f"{shard}: line {line}: duplicate column name(s) {', '.join(duplicates)}")
    if any(not name for name in columns):
        raise InputError(f"{shard}: line {line}: a column has an empty name")
    if len(columns) < 2:
        raise InputError(f"{shard}: only the label column {label_column!r}; need at least one feature column")


def _tfrecord_schema(shards: list[str], label_column: str) -> tuple[tuple[str, ...], str]:
    """Feature keys (sorted) and the label's dtype, from each shard's first record (empty shards are skipped)."""
    first, first_shard, label_dtype = None, None, "float32"
    for shard in shards:
        example = _first_example(shard)
        if example is None:
            continue
        columns = tuple(sorted(example.features.feature))
        if first is None:
            first, first_shard = columns, shard
            _check_columns(shard, 1, columns, label_column)
            kinds = {name: feature.WhichOneof("kind") for name, feature in example.features.feature.items()}
            wrong = [n for n in columns if n != label_column and kinds[n] != "float_list"]
            if wrong:
                raise InputError(
                    f"{shard}: record 1: feature {wrong[0]!r} is a {kinds[wrong[0]]}; "
                    "every feature must be a float_list"
                )
            if kinds[label_column] not in ("float_list", "int64_list"):
                raise InputError(
                    f"{shard}: record 1: label {label_column!r} is a {kinds[label_column]}; "
                    "use a float_list or int64_list"
                )
            label_dtype = "int64" if kinds[label_column] == "int64_list" else "float32"
        elif columns != first:
            raise InputError(
                f"{shard}: record 1: features ({', '.join(columns)}) differ from those of the first "
                f"shard {first_shard} ({', '.join(first)})"
            )
    if first is None:
        raise InputError(
            f"{shards[0]}: file is empty"
            if len(shards) == 1
            else f"{shards[0]} ...: all {len(shards)} shards are empty"
        )
    return first, label_dtype


def _first_example(shard: str):
    tf = import_tf()
    try:
        for record in tf.data.TFRecordDataset(shard).take(1):
            return tf.train.Example.FromString(record.numpy())
    except tf.errors.OpError as exc:
        raise InputError(f"{shard}: record 1: not a readable TFRecord file ({first_line(exc)})") from None
    except Exception as exc:  # protobuf's DecodeError: not a tf.Example
        raise InputError(f"{shard}: record 1: not a tf.Example ({exc})") from None
    return None


def first_line(exc: BaseException) -> str:
    """The line of an exception's message that says what went wrong.

    A TensorFlow error from inside a function runs to pages: "Graph execution
    error:", a traceback of the graph, then the error itself, right before the
    line naming the node ("[[{{node ...}}]]").
    """
    text = str(getattr(exc, "message", None) or exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("[[") and i:
            return lines[i - 1]
    return lines[0] if lines else type(exc).__name__


# -- reading chunks --------------------------------------------------------------------------------
def plain_graph(fn):
    """Trace `fn` as written: dataset functions here have no Python control flow for AutoGraph to convert,
    and converting them took most of the ~0.5 s every pipeline spent being built."""
    return import_tf().autograph.experimental.do_not_convert(fn)


def read_chunks(source: Source, shard_indices, shuffle_seed: int | None = None):
    """A tf.data.Dataset of chunks (see the module docstring) from the given shards.

    With `shuffle_seed`, the shards' order is reshuffled (seeded) on every pass.
    The output order is deterministic either way.
    """
    tf = import_tf()
    indices = np.asarray(list(shard_indices), dtype=np.int64)
    if source.format == "npz":  # one shard: all of it, or none for a worker other than the first
        return _npz_chunks(source).take(-1 if len(indices) else 0)
    files = tf.data.Dataset.from_tensor_slices(indices)
    if shuffle_seed is not None and len(indices) > 1:
        files = files.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=True)
    per_shard = _csv_shard if source.format == "csv" else _tfrecord_shard
    raw = files.interleave(
        per_shard(source),
        cycle_length=max(1, min(CYCLE_LENGTH, len(indices))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    parse = _csv_parser(source) if source.format == "csv" else _tfrecord_parser(source)
    return raw.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _csv_shard(source: Source):
    tf = import_tf()
    paths = tf.constant(source.shards)
    header_lines = tf.constant(source.header_lines, tf.int64)

    @plain_graph
    def chunks(index):
        header = tf.gather(header_lines, index)
        lines = tf.data.TextLineDataset(tf.gather(paths, index)).skip(header).batch(CHUNK_ROWS)
        return lines.enumerate().map(plain_graph(lambda k, batch: (batch, header + 1 + k * CHUNK_ROWS, index)))

    return chunks


def _tfrecord_shard(source: Source):
    tf = import_tf()
    paths = tf.constant(source.shards)

    @plain_graph
    def chunks(index):
        records = tf.data.TFRecordDataset(tf.gather(paths, index)).batch(CHUNK_ROWS)
        return records.enumerate().map(plain_graph(lambda k, batch: (batch, 1 + k * CHUNK_ROWS, index)))

    return chunks


def _csv_parser(source: Source):
    tf = import_tf()
    width = len(source.columns)
    row_pattern = ",".join([CELL] * width)
    zeros = ",".join(["0"] * width)
    label_index = source.columns.index(source.label_column)
    feature_indices = [i for i in range(width) if i != label_index]

    @plain_graph
    def parse(lines, first_number, shard):
        numbers = shard * (1 << SHARD_BITS) + first_number + tf.range(tf.size(lines, out_type=tf.int64))
        filled = tf.strings.length(tf.strings.strip(lines)) > 0  # blank lines are not rows
        lines, numbers = tf.boolean_mask(lines, filled), tf.boolean_mask(numbers, filled)
        well_formed = tf.strings.regex_full_match(lines, row_pattern)
        cells = tf.io.decode_csv(tf.where(well_formed, lines, zeros), [[0.0]] * width)
        features = tf.stack([cells[i] for i in feature_indices], axis=1)
        return _chunk(features, cells[label_index], well_formed, numbers)

    return parse


def _tfrecord_parser(source: Source):
    tf = import_tf()
    label_dtype = tf.int64 if source.label_dtype == "int64" else tf.float32
    spec = {name: tf.io.RaggedFeature(tf.float32) for name in source.feature_names}
    spec[source.label_column] = tf.io.RaggedFeature(label_dtype)

    def one_value(ragged, dtype):
        return tf.cast(ragged.to_tensor(default_value=tf.zeros([], dtype), shape=[None, 1])[:, 0], tf.float32)

    @plain_graph
    def parse(records, first_number, shard):
        numbers = shard * (1 << SHARD_BITS) + first_number + tf.range(tf.size(records, out_type=tf.int64))
        parsed = tf.io.parse_example(records, spec)
        single = tf.reduce_all(tf.stack([parsed[n].row_lengths() == 1 for n in source.columns], axis=1), axis=1)
        features = tf.stack([one_value(parsed[n], tf.float32) for n in source.feature_names], axis=1)
        return _chunk(features, one_value(parsed[source.label_column], label_dtype), single, numbers)

    return parse


def _npz_chunks(source: Source):
    tf = import_tf()
    arrays = source.arrays
    rows = tf.data.Dataset.from_tensor_slices((arrays.features, arrays.labels, np.arange(len(arrays), dtype=np.int64)))
    return rows.batch(CHUNK_ROWS).map(
        plain_graph(lambda x, y, row: _chunk(x, y, tf.ones_like(y, tf.bool), row)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _chunk(features, labels, well_formed, rows) -> dict:
    tf = import_tf()
    ok = well_formed & tf.reduce_all(tf.math.is_finite(features), axis=1) & ((labels == 0.0) | (labels == 1.0))
    fingerprint = tf.bitcast(tf.fingerprint(tf.concat([features, labels[:, None]], axis=1)), tf.int64)
    return {"x": features, "y": labels, "ok": ok, "row": rows, "fp": tf.reshape(fingerprint, [-1])}


# -- the split and the sides -----------------------------------------------------------------------
def heldout_mask(chunk: dict, test_fraction: float | None):
    """True for rows on the held-out side of the stable hash split (none when `test_fraction` is None)."""
    tf = import_tf()
    if test_fraction is None:
        return tf.zeros_like(chunk["ok"])
    return tf.math.floormod(chunk["fp"], SPLIT_BUCKETS) < round(test_fraction * SPLIT_BUCKETS)


def side(chunks, test_fraction: float | None, heldout: bool):
    """(features, labels) of the good rows on one side of the split, one element per chunk."""
    tf = import_tf()

    @plain_graph
    def rows(chunk):
        held = heldout_mask(chunk, test_fraction)
        keep = chunk["ok"] & (held if heldout else ~held)
        return tf.boolean_mask(chunk["x"], keep), tf.boolean_mask(chunk["y"], keep)

    return chunks.map(rows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def shuffled_batches(rows, batch_size: int, shuffle_buffer: int, seed: int):
    """Batches of `batch_size` rows, shuffled within consecutive blocks of `shuffle_buffer` rows.

    `rows` yields (features, labels) chunks. The chunks pass a seeded shuffle
    buffer of their own, then every block is permuted with a seed from (`seed`,
    block number), so a pass never repeats the last one's order. A per-row
    `Dataset.shuffle` cost about 5 us a row on this machine, more than reading
    and parsing it; these permutations cost about 0.1 us.
    """
    tf = import_tf()

    @plain_graph
    def permute(block_number, block):
        features, labels = block
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(labels)[0]), seed=tf.stack([tf.constant(seed, tf.int64), block_number])
        )
        return tf.gather(features, order), tf.gather(labels, order)

    return (
        rows.shuffle(max(2, math.ceil(shuffle_buffer / CHUNK_ROWS)), seed=seed)
        .rebatch(shuffle_buffer)
        .enumerate()
        .map(permute, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .rebatch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


# -- scanning: counts, bad rows, the data hash ------------------------------------------------------
SCAN_FIELDS = ("bad", "train", "heldout", "train_positive", "heldout_positive", "fingerprint_sum", "chunks")
NO_ROW = np.iinfo(np.int64).max


def scan(chunks, test_fraction: float | None) -> tuple[np.ndarray, int]:
    """One pass: int64 counts in SCAN_FIELDS order, and the row id of the first bad row (NO_ROW if none)."""
    tf = import_tf()

    @plain_graph
    def summarize(chunk):
        held = heldout_mask(chunk, test_fraction)
        ok, positive = chunk["ok"], chunk["y"] == 1.0

        def count(mask):
            return tf.reduce_sum(tf.cast(mask, tf.int64))

        counts = tf.stack(
            [
                count(~ok),
                count(ok & ~held),
                count(ok & held),
                count(ok & ~held & positive),
                count(ok & held & positive),
                tf.reduce_sum(tf.where(ok, chunk["fp"], 0)),
                tf.constant(1, tf.int64),
            ]
        )
        first_bad = tf.reduce_min(tf.where(ok, tf.constant(NO_ROW, tf.int64), chunk["row"]))
        return counts, first_bad

    initial = (tf.zeros([len(SCAN_FIELDS)], tf.int64), tf.constant(NO_ROW, tf.int64))
    counts, first_bad = chunks.map(summarize, num_parallel_calls=tf.data.AUTOTUNE).reduce(
        initial, plain_graph(lambda total, part: (total[0] + part[0], tf.minimum(total[1], part[1])))
    )
    return counts.numpy(), int(first_bad)


def data_hash(source: Source, good_rows: int, fingerprint_sum: int) -> str:
    """sha256 over the feature names, the good rows' count and the sum of their fingerprints.

    The sum makes it independent of row order, sharding and file format (and
    of what the label column is called): the same rows give the same hash
    however they are stored.
    """
    h = hashlib.sha256()
    h.update("\0".join(source.feature_names).encode())
    h.update(f"{good_rows}:{fingerprint_sum & (2**64 - 1)}".encode())
    return h.hexdigest()


def samples(source: Source, test_fraction: float | None) -> tuple[datamod.Dataset, datamod.Dataset]:
    """The first SAMPLE_ROWS good rows of each side (training, held-out) in shard order; reads only that far."""
    sides = ([], []), ([], [])  # (features, labels) of the training side, then of the held-out side
    for chunk in read_chunks(source, range(len(source.shards))):
        held = heldout_mask(chunk, test_fraction).numpy()
        ok, x, y = chunk["ok"].numpy(), chunk["x"].numpy(), chunk["y"].numpy()
        for (features, labels), keep in zip(sides, (ok & ~held, ok & held)):
            features.append(x[keep])
            labels.append(y[keep])
        if all(sum(map(len, labels)) >= SAMPLE_ROWS for _, labels in sides):
            break
    return tuple(
        datamod.Dataset(
            np.concatenate(features)[:SAMPLE_ROWS],
            np.concatenate(labels)[:SAMPLE_ROWS],
            source.feature_names,
            source.describe(),
        )
        for features, labels in sides
    )


# -- explaining a bad row --------------------------------------------------------------------------
def explain(source: Source, row: int) -> str:
    """'FILE: line N, column C: what is wrong' for a row the chunk parser marked bad."""
    shard, number = divmod(int(row), 1 << SHARD_BITS)
    if source.format == "csv":
        problem = _csv_problem(source, _read_line(source.shards[shard], number))
    else:
        problem = _example_problem(source, _read_record(source.shards[shard], number))
    return f"{source.location(row)}{problem or ': malformed row'}"


def locate_unparsable(source: Source, shard_indices) -> str | None:
    """After a TFRecord pipeline failed: 'FILE: record N: problem' of the first record that is not a good row.

    Only a TFRecord parse fails outright (on a feature stored as another type);
    this walks the records in Python, slowly, so it runs only after a failure.
    """
    if source.format != "tfrecord":
        return None
    tf = import_tf()
    for index in shard_indices:
        path, number = source.shards[index], 0
        try:
            for number, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator(), start=1):
                problem = _example_problem(source, record)
                if problem:
                    return f"{path}: record {number}{problem}"
        except tf.errors.OpError as exc:
            return f"{path}: record {number + 1}: not readable ({first_line(exc)})"
    return None


def _read_line(path: str, number: int) -> str:
    tf = import_tf()
    with tf.io.gfile.GFile(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            if i == number:
                return raw.decode("utf-8", errors="replace").rstrip("\r\n")
    return ""


def _read_record(path: str, number: int) -> bytes:
    tf = import_tf()
    for record in tf.data.TFRecordDataset(path).skip(number - 1).take(1):
        return record.numpy()
    return b""


def _csv_problem(source: Source, line: str) -> str | None:
    cells = line.split(",")
    if len(cells) != len(source.columns):
        return f": expected {len(source.columns)} cells, found {len(cells)}"
    values = {}
    for name, cell in zip(source.columns, cells):
        if not re.fullmatch(CELL, cell):
            return f", column {name!r}: {cell.strip()!r} is not a number"
        values[name] = float(cell.strip().strip('"'))
    return _value_problem(source, values)


def _example_problem(source: Source, record: bytes) -> str | None:
    try:
        example = import_tf().train.Example.FromString(record)
    except Exception as exc:  # protobuf's DecodeError
        return f": not a tf.Example ({exc})"
    values = {}
    for name in source.columns:
        feature = example.features.feature.get(name)
        if feature is None:
            return f": feature {name!r} is missing"
        kind = feature.WhichOneof("kind")
        expected = "int64_list" if name == source.label_column and source.label_dtype == "int64" else "float_list"
        if kind != expected:
            return f", feature {name!r}: stored as {kind or 'an empty feature'}; expected {expected}"
        found = list(getattr(feature, kind).value)
        if len(found) != 1:
            return f", feature {name!r}: {len(found)} values; expected exactly 1"
        values[name] = float(found[0])
    return _value_problem(source, values)


def _value_problem(source: Source, values: dict) -> str | None:
    for name in source.feature_names:
        value = values[name]
        if math.isnan(value):
            return f", column {name!r}: feature is NaN"
        if math.isinf(value):
            return f", column {name!r}: feature is {value}"
        with np.errstate(over="ignore"):
            overflows = not math.isfinite(np.float32(value))
        if overflows:
            return f", column {name!r}: feature {value:g} is too large for float32"
    label = values[source.label_column]
    if label not in (0.0, 1.0):
        return f", column {source.label_column!r}: label {label:g} is not 0 or 1"
    return None
