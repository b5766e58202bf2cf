"""A SavedModel's saved_model.pb, read and edited as a proto: the MetaGraph TF Serving loads (by its
tag-set), its signature keys, whether it is a TF1 graph, and keeping only some of its signatures.

Editing the proto keeps everything else byte for byte (TF1 graphs, method names, assets), which
loading and re-saving would not.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.artifacts.inspect import INIT_OP_KEY
from toolkit.errors import InputError
from toolkit.tfenv import import_tf

SAVED_MODEL_PB = "saved_model.pb"
FINGERPRINT_PB = "fingerprint.pb"
#: the MetaGraph TF Serving loads unless --saved_model_tags says otherwise
DEFAULT_TAGS = ("serve",)


def read(folder: str | Path):
    """The `SavedModel` proto of `folder`/saved_model.pb."""
    import_tf()  # the protos import TensorFlow; import_tf() does it quietly first
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(folder) / SAVED_MODEL_PB
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(path.read_bytes())
    except (DecodeError, OSError) as exc:
        raise InputError(f"{path}: not a readable SavedModel ({exc})") from None
    return proto


def meta_graph(proto, tags, where):
    """The MetaGraphDef tagged exactly `tags` (TF Serving's --saved_model_tags), else InputError naming the others."""
    for candidate in proto.meta_graphs:
        if set(candidate.meta_info_def.tags) == set(tags):
            return candidate
    available = "; ".join(",".join(sorted(m.meta_info_def.tags)) for m in proto.meta_graphs) or "none"
    raise InputError(
        f"{where}: no MetaGraph tagged {','.join(tags)} (it has tag-sets: {available}); pass --tags with one of them"
    )


def signature_keys(folder: str | Path, tags, where=None) -> list[str]:
    """The signature keys of the MetaGraph tagged `tags`, sorted; errors name `where` (default: `folder`)."""
    graph = meta_graph(read(folder), tags, where or folder)
    return sorted(key for key in graph.signature_def if key != INIT_OP_KEY)


def is_tf1(folder: str | Path, tags) -> bool:
    """True for a TF1 graph (no TF2 object graph): the TFLite converter cannot lift its variables."""
    return not meta_graph(read(folder), tags, folder).object_graph_def.nodes


def keep_signatures(folder: str | Path, tags, keep: list[str]) -> None:
    """Rewrite saved_model.pb so the MetaGraph tagged `tags` has only the signatures in `keep`.

    Both TF Serving's view (the SignatureDef map) and TF2's `tf.saved_model.load(...).signatures`
    (the object graph's signature map) lose the others. The fingerprint, a checksum of the old
    saved_model.pb, would no longer match and is removed.
    """
    folder = Path(folder)
    proto = read(folder)
    graph = meta_graph(proto, tags, folder)
    dropped = [key for key in graph.signature_def if key != INIT_OP_KEY and key not in keep]
    if not dropped:
        return
    for key in dropped:
        del graph.signature_def[key]
    nodes = graph.object_graph_def.nodes
    if nodes:
        signature_map = next((nodes[c.node_id] for c in nodes[0].children if c.local_name == "signatures"), None)
        if signature_map is not None:
            kept = [c for c in signature_map.children if c.local_name not in dropped]
            del signature_map.children[:]
            signature_map.children.extend(kept)
    (folder / SAVED_MODEL_PB).write_bytes(proto.SerializeToString())
    (folder / FINGERPRINT_PB).unlink(missing_ok=True)
