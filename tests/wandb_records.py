"""Read W&B's offline transaction log (``run-*.wandb``) back, for the tests.

The file is a LevelDB-style log of protobuf ``Record`` messages: a 7-byte header, then 32 KiB
blocks of chunks, each with a 7-byte header (crc32c, length, type: 1 full, 2 first, 3 middle,
4 last).
"""

import json
import struct

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7  # ":W&B" ident + uint16 magic + uint8 version


def records(path):
    """Records of a W&B transaction log (.wandb), a LevelDB-style log of protobuf records."""
    data = open(path, "rb").read()
    assert data[:4] == b":W&B", data[:8]
    pos, buf = HEADER, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec
            buf = b""


def read_run(run_dir):
    """``{"run": RunRecord, "config": {...}, "history": [{...}], "summary": {...}}`` of the one
    offline W&B run under ``run_dir/wandb``."""
    from pathlib import Path

    files = list(Path(run_dir, "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    out = {"run": None, "config": {}, "history": [], "summary": {}}
    for rec in records(files[0]):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out["summary"].update({i.key: json.loads(i.value_json) for i in rec.summary.update if i.key})
    return out
