"""What rebuilds a run's generator from its checkpoint alone: no training data, no discriminator.

Every example that trains a generator records, in its checkpoint's ``extra["generator"]``:

    {"class":  "minigan.gan.models.Generator",       the generator's class, a dotted path
     "kwargs": {"nz": 100, "ngf": 64, "nc": 1},      its constructor's arguments (JSON values)
     "model":  "G_ema",                              which of the checkpoint's models holds it
     "latent": {"nz": 100, "labels": 10}}            what G is called with: noise (N, nz), and
                                                     for a conditional G labels (N,) in 0..9
                                                     (omitted: G(z) alone); InfoGAN's G takes
                                                     "codes": K (a category per image) and
                                                     "continuous": M (codes ~ U(-1, 1)) instead;
                                                     "mixture": m, the first m noise coordinates
                                                     pick a mixture component (never truncated)

:func:`generator_record` writes it and :func:`load_generator` reads it back. Only classes
inside the ``minigan`` package are imported: a checkpoint is data, and a dotted path naming any
other module would let a downloaded file run that module's code.
"""
import importlib
import json
import os

from .. import backend, io
from ..nn import Module

PACKAGE = "minigan"


class NotAGeneratorCheckpoint(ValueError):
    """The file is a checkpoint, but nothing in it says how to rebuild a generator (or what it
    says cannot be followed)."""


def generator_record(G, kwargs, model="G", labels=None, **latent):
    """The record above for generator ``G``, built as ``type(G)(**kwargs)`` and stored under the
    checkpoint's model ``model``. ``latent``: the noise size ``nz`` (default ``kwargs['nz']``)
    and any other inputs the generator takes; ``labels``: the number of classes of a conditional
    generator. Checks now that the record rebuilds a G of the same class and parameter shapes, so
    a wrong record fails at the start of training, not when someone samples from it."""
    cls = type(G)
    path = f"{cls.__module__}.{cls.__qualname__}"
    if not path.startswith(PACKAGE + "."):
        raise ValueError(f"generator_record: {path} is outside the {PACKAGE} package; "
                         "examples.sample only rebuilds minigan's own classes")
    latent = {"nz": latent.pop("nz", kwargs.get("nz")), **latent}
    if latent["nz"] is None:
        raise ValueError("generator_record: pass nz= (the noise size) when kwargs has no 'nz'")
    if labels is not None:
        latent["labels"] = int(labels)
    record = {"class": path, "kwargs": dict(kwargs), "model": model, "latent": latent}
    try:
        json.dumps(record)
    except TypeError as e:
        raise ValueError(f"generator_record: kwargs and latent must be JSON values ({e})") from None
    saved = backend.get_rng_state()   # building draws initial weights: leave the stream alone
    try:
        rebuilt = build_generator(record)
    finally:
        backend.set_rng_state(saved)
    ours = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if ours != theirs:
        raise ValueError(f"generator_record: {path}(**{kwargs}) does not rebuild this generator "
                         "(parameters differ: "
                         f"{sorted(set(ours.items()) ^ set(theirs.items()))[:4]})")
    return record


def _import_class(path):
    if not isinstance(path, str) or not path.startswith(PACKAGE + ".") or ".." in path:
        raise NotAGeneratorCheckpoint(f"the generator class {path!r} is not inside the "
                                      f"{PACKAGE} package; refusing to import it")
    module_name, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise NotAGeneratorCheckpoint(f"the generator class {path} cannot be found ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise NotAGeneratorCheckpoint(f"{path} is not a minigan.nn.Module class")
    return cls


def build_generator(record):
    """A freshly initialised generator as ``record`` describes it (weights not loaded)."""
    for key in ("class", "kwargs", "model", "latent"):
        if key not in record:
            raise NotAGeneratorCheckpoint(f"the generator record has no {key!r} "
                                          f"(it holds {sorted(record)})")
    cls = _import_class(record["class"])
    try:
        return cls(**record["kwargs"])
    except TypeError as e:
        raise NotAGeneratorCheckpoint(
            f"{record['class']}(**{record['kwargs']}) failed: {e}") from None


def checkpoint_file(path):
    """``path`` itself, or the checkpoint.npz inside a run folder."""
    file = os.path.join(path, "checkpoint.npz") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        where = "run folder without a checkpoint.npz" if os.path.isdir(path) else "no such file"
        raise FileNotFoundError(f"{path}: {where}")
    return file


def load_generator(path, model=None, device="cpu"):
    """(G with the checkpoint's weights, in evaluation mode, on ``device``; its record; the
    checkpoint's step) from a run folder or checkpoint file. ``model`` picks another of the
    checkpoint's models of the same class (e.g. 'G', the trained weights, where the record names
    their average 'G_ema').

    Raises FileNotFoundError, :class:`minigan.io.CheckpointError` for a file that is not a
    minigan checkpoint, and :class:`NotAGeneratorCheckpoint` for one without a generator."""
    file = checkpoint_file(path)
    with open(file, "rb") as f:   # NumPy would try a text file as a pickle and say so: say this
        if f.read(4) != b"PK\x03\x04":
            raise io.CheckpointError(file, "not a minigan checkpoint (checkpoints are .npz "
                                           "archives written by minigan.io.save_checkpoint)")
    state = io.load_checkpoint(file)
    record = (state.get("extra") or {}).get("generator") if isinstance(state, dict) else None
    models = (state.get("models") or {}) if isinstance(state, dict) else {}
    if not isinstance(record, dict):
        raise NotAGeneratorCheckpoint(
            f"{file} records no generator (its models: {sorted(models) or 'none'}); it was "
            "written by a program that does not call minigan.gan.rebuild.generator_record, or "
            "before it did")
    name = model or record.get("model")
    if name not in models:
        raise NotAGeneratorCheckpoint(f"{file} has no model {name!r} (it holds {sorted(models)})")
    G = build_generator(record)
    try:
        G.load_state_dict(models[name])
    except (KeyError, ValueError) as e:
        raise NotAGeneratorCheckpoint(f"{file}: model {name!r} does not fit {record['class']} "
                                      f"({e})") from None
    G.to(device).eval()
    return G, {**record, "model": name}, int(state.get("step", 0))
