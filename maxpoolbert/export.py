"""A finished run as a Hugging Face model folder: ``python -m maxpoolbert.export RUN_DIR OUT_DIR``.

The classifier is rebuilt from the run (:func:`maxpoolbert.predict.load_trained`) and written with
``save_pretrained`` (``config.json``, ``model.safetensors``), beside the run's tokenizer, with the
task's class names as ``id2label`` / ``label2id`` (``problem_type`` ``regression`` for STS-B):

* a run whose head is its encoder family's stock head (``pooling=cls``; ModernBERT also
  ``pooling=mean``) becomes the family's own ``<Family>ForSequenceClassification``: it loads with
  ``AutoModelForSequenceClassification.from_pretrained(OUT_DIR)``, plain ``transformers``;
* any other run becomes ``MaxPoolBertForSequenceClassification`` with its code in the folder
  (:mod:`maxpoolbert.model.modeling_maxpoolbert`): it loads with ``trust_remote_code=True``, without this
  project installed.

Before the folder appears, the written model is loaded back and must give the run's outputs on a
few sentence pairs. OUT_DIR is written whole or not at all (a staging folder beside it,
``.OUT.<host>.<pid>.*``, renamed at the end; those that killed exports left are removed by the
next export), with the permissions of new files (the user's umask); an OUT_DIR that exists and
is not empty is refused.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from maxpoolbert.core import signatures
from maxpoolbert.core.errors import UserError, check_writable_folder, fail, user_error
from maxpoolbert.core.io import umask
from maxpoolbert.predict import load_run, load_trained
from maxpoolbert.tasks.task import Task

if TYPE_CHECKING:
    from maxpoolbert.model.classifier import PooledClassifier

# The run folder and OUT_DIR are checked (runs.folder: no torch) before torch and transformers are
# imported (inside the functions that build and write the model): a wrong path is answered at once.

# The code of a MaxPoolBertForSequenceClassification folder (``trust_remote_code=True``): these modules
# of the package, flat beside the folder's config.json, as transformers loads them; their imports of
# the package itself made relative to the folder (FLAT_IMPORTS): the folder loads without the package.
CODE = ("model/modeling_maxpoolbert.py", "model/classifier.py", "model/pooling.py", "model/families.py", "core/errors.py")
FLAT_IMPORTS = {"from maxpoolbert.core.errors import": "from .errors import"}
AUTO_MAP = {"AutoConfig": "modeling_maxpoolbert.MaxPoolBertConfig",
            "AutoModelForSequenceClassification": "modeling_maxpoolbert.MaxPoolBertForSequenceClassification"}

CHECK_TEXTS = (["A man is playing a flute.", "Short."], ["Someone plays music on a flute today.", "Ok"])


def is_stock(model: PooledClassifier) -> bool:
    """Whether the family's own sequence-classification class computes exactly this model."""
    import torch

    family = model.family
    return (family.has_stock_head and not isinstance(model.pooler, torch.nn.Identity)
            and type(model.pooling) in family.stock_pooling)


def labels(task: Task) -> dict:
    names = task.class_names
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)},
            "problem_type": "regression" if task.is_regression else "single_label_classification"}


def encoder_config(model: PooledClassifier) -> dict:
    """The encoder's config without ``_name_or_path``: where the encoder was loaded from on the
    training machine (a local folder, the embedded model's place in site-packages) has no use in
    a model folder for others, and must not be written into it."""
    config = model.encoder.config.to_dict()
    config.pop("_name_or_path", None)
    return config


def stock_model(model: PooledClassifier, task: Task):
    """The family's own ``AutoModelForSequenceClassification`` with the run's weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    family = model.family
    config = AutoConfig.for_model(**encoder_config(model))
    config.num_labels = task.num_labels
    for key, value in {**labels(task), **family.stock_pooling[type(model.pooling)]}.items():
        setattr(config, key, value)
    stock = AutoModelForSequenceClassification.from_config(config)
    state = {family.stock_key(k): v for k, v in model.state_dict().items()}
    stock.load_state_dict(state, strict=True)
    return stock


def remote_code_model(model: PooledClassifier, task: Task, cfg: DictConfig):
    """``MaxPoolBertForSequenceClassification`` with the run's weights, registered so that
    ``save_pretrained`` writes its code into the folder."""
    from maxpoolbert.model import modeling_maxpoolbert as M

    given = OmegaConf.to_container(cfg.pooling.module, resolve=True)
    target = given.pop("_target_")
    # every option of the strategy, the ones its YAML leaves out at its class's declared default
    options = signatures.with_defaults(target, given)
    module, _, name = target.rpartition(".")
    if module != "maxpoolbert.model.pooling":
        raise UserError(f"pooling {name} is defined in {module}: export writes only the strategies of "
                        "maxpoolbert.model.pooling into a model folder")
    config = M.MaxPoolBertConfig(
        encoder=encoder_config(model), pooling={"class": name, "options": options},
        use_pooler=bool(cfg.head.use_pooler), head_dropout=cfg.head.dropout,
        num_labels=task.num_labels, **labels(task))
    config.auto_map = dict(AUTO_MAP)  # its code: written beside it (write_code)
    hf = M.MaxPoolBertForSequenceClassification(config)
    hf.model.load_state_dict(model.state_dict(), strict=True)
    return hf


def write_code(folder: Path) -> None:
    """The model's code (:data:`CODE`) into ``folder``, flat, its imports of the package made relative."""
    package = Path(__file__).resolve().parent
    for rel in CODE:
        text = (package / rel).read_text(encoding="utf-8")
        for project, flat in FLAT_IMPORTS.items():
            text = text.replace(project, flat)
        if re.search(r"^\s*(from|import)\s+maxpoolbert\b", text, re.M):
            raise RuntimeError(f"maxpoolbert/{rel} imports the package beyond FLAT_IMPORTS: it cannot go into a model folder")
        (folder / Path(rel).name).write_text(text, encoding="utf-8")


def check_outputs(model: PooledClassifier, folder: Path, remote: bool) -> float:
    """Largest difference between the run's model and the written folder (model and tokenizer, as
    a user loads them) on a few sentence pairs."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=remote)
    loaded = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=remote).eval()
    enc = tokenizer(*CHECK_TEXTS, padding=True, return_tensors="pt")
    types = enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))
    model = model.cpu().eval()
    with torch.no_grad():
        want = model(enc["input_ids"], enc["attention_mask"], types)
        got = loaded(**enc).logits
    return float((want - got).abs().max())


def as_new_files(folder: Path) -> None:
    """The permissions the user's umask gives new folders and files (0755 and 0644 with umask 022)
    on ``folder`` and everything in it: a temporary folder is made private (0700, files 0600)."""
    mask = umask()
    folder.chmod(0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            Path(root, name).chmod(0o777 & ~mask)
        for name in files:
            Path(root, name).chmod(0o666 & ~mask)


def staging_prefix(out_dir: Path) -> str:
    """The name of OUT_DIR's staging folders, up to the writer's PID: ``.OUT.<host>.``."""
    return f".{out_dir.name}.{socket.gethostname()}."


def clean_stale_staging(out_dir: Path) -> list[Path]:
    """Remove the staging folders of OUT_DIR that exports killed on this host left beside it (their
    process is gone); a live export's, or another host's, stay."""
    prefix = staging_prefix(out_dir)
    removed = []
    for path in out_dir.parent.glob(glob.escape(prefix) + "*"):
        pid = path.name.removeprefix(prefix).partition(".")[0]
        if path.is_dir() and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def export(run_dir: Path, out_dir: Path) -> Path:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError("exists and is not empty", key="OUT_DIR", value=out_dir, allowed="a new or empty folder")
    check_writable_folder(out_dir, "OUT_DIR")
    cfg = load_run(run_dir)
    task, tokenizer, model = load_trained(run_dir, cfg)
    model = model.cpu()
    stock = is_stock(model)
    hf = stock_model(model, task) if stock else remote_code_model(model, task, cfg)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=staging_prefix(out_dir) + f"{os.getpid()}.", dir=out_dir.parent))
    try:
        hf.save_pretrained(tmp)
        if not stock:
            write_code(tmp)
        if not model.use_token_type_ids:  # the tokenizer returns only what the model takes
            names = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
            tokenizer.model_input_names = tokenizer.init_kwargs["model_input_names"] = names
        tokenizer.save_pretrained(tmp)
        diff = check_outputs(model, tmp, remote=not stock)
        if not diff <= 1e-4:
            raise RuntimeError(f"the exported model's outputs differ from the run's by {diff:.3g}")
        as_new_files(tmp)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    kind = "stock " + type(hf).__name__ if stock else "MaxPoolBertForSequenceClassification (trust_remote_code=True)"
    print(f"{out_dir}: {kind}, labels {task.class_names}; outputs checked (max diff {diff:.2g})", flush=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m maxpoolbert.export",
        description="Write a finished run as a Hugging Face model folder (config, safetensors, tokenizer).")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="finished run folder (with model.safetensors)")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="new or empty output folder")
    args = parser.parse_args(argv)
    try:
        export(args.run_dir, args.out_dir)
    except OSError as err:
        fail(f"{err.strerror or type(err).__name__}: {err.filename or ''}".rstrip(": "))
    except Exception as err:
        user = user_error(err)
        if user is None:
            raise
        fail(user)
    return 0


if __name__ == "__main__":
    sys.exit(main())
