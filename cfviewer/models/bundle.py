"""A model bundle: classifier + autoencoder + metadata, saved to and loaded from one directory.

Directory layout::

    bundle.json       format, version, pathologies, resolution, input_transform,
                      thresholds, meta, and for each model: class ("module:QualName"),
                      config (constructor arguments), file
    classifier.pt     state dict (loaded with torch.load(weights_only=True))
    autoencoder.pt    state dict (absent when the bundle has no autoencoder)

The classifier may be any ``nn.Module`` that maps N x 1 x R x R images in [-1024, 1024] to
N x C probabilities; the autoencoder any module with ``encode`` / ``decode``. Saving needs
classes that live in the ``cfviewer`` package and expose ``config()`` (constructor kwargs).

The model input is owned here: :meth:`Bundle.model_input` is the one transform from a stored
film (any H x W) to the classifier's N x 1 x R x R input, used by every path that shows a
reader or a researcher a prediction (sampling, precompute, ``cfviewer explain``, the sandbox,
the benchmarks). It is named by ``input_transform`` (stored in bundle.json and in every
artifact's params hash); :meth:`Bundle.field_of_view` says which part of the film the model
saw, so the reader pages can show the same field.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cfviewer.device import resolve_device
from cfviewer.errors import BundleError, UnknownPathologyError
from cfviewer.files import sha256_file

FORMAT = "cfviewer-bundle"
VERSION = 1
BUNDLE_JSON = "bundle.json"
CLASSIFIER_FILE = "classifier.pt"
AUTOENCODER_FILE = "autoencoder.pt"
DEFAULT_THRESHOLD = 0.5
PIXEL_MIN, PIXEL_MAX = -1024.0, 1024.0

CENTER_CROP = "center-crop-square+antialiased-bilinear"
"""The model input transform: the largest centred square of the film (the field of view,
:func:`cfviewer.imaging.center_crop_box`), then an antialiased bilinear resize to R x R and a
clip to [-1024, 1024]; torchxrayvision's XRayCenterCrop + XRayResizer. A non-square film is
cropped, never squashed: squashing changes the cardiothoracic ratio a Cardiomegaly model reads."""
INPUT_TRANSFORMS = (CENTER_CROP,)
"""Transforms a bundle may name. Bundles written before ``input_transform`` existed were
trained on square images, for which this transform is the only one (crop = identity)."""


class Bundle:
    """Classifier + optional autoencoder + metadata, on one device, in eval mode.

    Args:
        classifier: module returning probabilities N x C (sigmoid applied).
        autoencoder: module with ``encode`` / ``decode``, or None.
        pathologies: output names in order; default ``classifier.pathologies``.
        resolution: side R of the square model input.
        thresholds: per-pathology operating points; missing names get 0.5.
        meta: free-form JSON-serialisable metadata (training summary, provenance).
        device: "auto" (CUDA when present), "cpu", "cuda", ...
        input_transform: how a film becomes the model input (one of ``INPUT_TRANSFORMS``).
    """

    def __init__(
        self,
        classifier: nn.Module,
        autoencoder: nn.Module | None = None,
        pathologies: Sequence[str] | None = None,
        resolution: int = 224,
        thresholds: Mapping[str, float] | None = None,
        meta: Mapping[str, Any] | None = None,
        device: str | torch.device = "auto",
        input_transform: str = CENTER_CROP,
    ):
        if input_transform not in INPUT_TRANSFORMS:
            raise BundleError(
                f"Bundle: unknown input_transform {input_transform!r}; this cfviewer knows "
                f"{', '.join(INPUT_TRANSFORMS)}"
            )
        self.input_transform = input_transform
        if pathologies is None:
            pathologies = getattr(classifier, "pathologies", None)
            if pathologies is None:
                raise BundleError(
                    "Bundle: the classifier has no .pathologies attribute; pass pathologies=[...]"
                )
        self.pathologies: list[str] = list(pathologies)
        if autoencoder is not None and not (
            callable(getattr(autoencoder, "encode", None))
            and callable(getattr(autoencoder, "decode", None))
        ):
            raise BundleError(
                f"Bundle: the autoencoder {type(autoencoder).__name__} needs encode() and decode()"
            )
        self.resolution = int(resolution)
        thresholds = dict(thresholds or {})
        unknown = sorted(set(thresholds) - set(self.pathologies))
        if unknown:
            raise BundleError(
                f"Bundle: thresholds given for {unknown}, which the classifier does not predict "
                f"({', '.join(self.pathologies)})"
            )
        self.thresholds: dict[str, float] = {
            p: float(thresholds.get(p, DEFAULT_THRESHOLD)) for p in self.pathologies
        }
        self.meta: dict[str, Any] = dict(meta or {})
        self.device = resolve_device(device)
        self.classifier = classifier.to(self.device).eval()
        self.autoencoder = autoencoder.to(self.device).eval() if autoencoder is not None else None
        self.directory: Path | None = None
        """The folder :meth:`load` read this bundle from (None: built in memory)."""
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """The model's name in a study (its cohort, artifacts and exports record it): for a
        bundle loaded from a folder, :func:`bundle_identity` of that folder (hashed once, when
        first asked); for one built in memory, ``in-memory:<meta source>:<meta seed>``."""
        if self._identity is None:
            self._identity = (bundle_identity(self.directory) if self.directory is not None
                              else _in_memory_identity(self.meta))
        return self._identity

    # ------------------------------------------------------------------ inference
    def field_of_view(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)``: the part of an H x W film that :meth:`model_input` hands to
        the model (the largest centred square)."""
        from cfviewer.imaging import center_crop_box

        h, w = int(shape[-2]), int(shape[-1])
        return center_crop_box(h, w, 1.0)

    def input_spec(self) -> dict[str, Any]:
        """What the model input is, for params hashes and explanation records."""
        return {"transform": self.input_transform, "resolution": self.resolution}

    def model_input(
        self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]
    ) -> torch.Tensor:
        """The model input of one film (H x W), a batch (N x H x W or N x 1 x H x W) or a list
        of films of any sizes: N x 1 x R x R float32 on ``device``, values in [-1024, 1024].

        The one transform of the bundle (``input_transform``): crop each film to its field of
        view (:meth:`field_of_view`, the centred square), resize it (bilinear, antialiased) to
        R x R, clip to [-1024, 1024]. Every path calls this, so the probability a reader is
        shown at sampling is the one the explanation was computed at."""
        if isinstance(images, (list, tuple)):
            if not images:
                raise BundleError("model_input: no images given")
            return torch.cat([self.model_input(im) for im in images])
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        if not x.is_floating_point():
            # raw file values (uint8 0-255, uint16 0-65535) would be clipped to [0, 1024] and
            # give a confident-looking wrong probability
            raise BundleError(
                f"model_input: got {str(x.dtype).replace('torch.', '')} pixels"
                + (f" (values {int(x.long().min())}-{int(x.long().max())})" if x.numel() else "") + ", "
                "raw file values, while the model reads float films in [-1024, 1024]; load the file with "
                "cfviewer.imaging.load (PNG, JPEG, TIFF, DICOM), which maps it to that range"
            )
        x = x.to(dtype=torch.float32)
        if x.ndim == 2:
            x = x[None, None]
        elif x.ndim == 3:
            x = x[:, None]
        elif x.ndim != 4 or x.shape[1] != 1:
            raise BundleError(
                f"model_input: expected an H x W or N x H x W single-channel image, got shape "
                f"{tuple(x.shape)}; convert colour images to grey first (cfviewer.imaging.load)"
            )
        y0, y1, x0, x1 = self.field_of_view(x.shape)
        return resize_to_resolution(x[..., y0:y1, x0:x1].to(self.device), self.resolution)

    preprocess = model_input  # the name earlier releases used

    @torch.no_grad()
    def predict(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Probabilities N x C (float32) for one film (H x W), a batch or a list of films of any
        sizes (each through :meth:`model_input`)."""
        x = self.model_input(images)
        out = [self.classifier(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return torch.cat(out).float().cpu().numpy()

    @torch.no_grad()
    def predict_class(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray], index: int,
                      batch_size: int = 32) -> np.ndarray:
        """Probabilities (N, float32) of output ``index`` only. A classifier that can evaluate one
        class per row (``logits_of``: Attri-Net, one generator pass per class) is asked for that
        class alone; any other gives :meth:`predict`'s column."""
        clf = self.classifier
        if not callable(getattr(clf, "logits_of", None)):
            return self.predict(images, batch_size)[:, int(index)]
        x = self.model_input(images)
        out = [torch.sigmoid(clf.logits_of(x[i : i + batch_size], int(index)))
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).float().cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """D(E(x)) as N x R x R float32 in [-1024, 1024]."""
        if self.autoencoder is None:
            raise BundleError("this bundle has no autoencoder; train or load one with an autoencoder")
        x = self.model_input(images)
        out = [
            self.autoencoder.decode(self.autoencoder.encode(x[i : i + batch_size]))
            for i in range(0, len(x), batch_size)
        ]
        return torch.cat(out)[:, 0].float().cpu().numpy()

    def target_index(self, name: str) -> int:
        """Output column of a pathology; raises UnknownPathologyError."""
        try:
            return self.pathologies.index(name)
        except ValueError:
            raise UnknownPathologyError(name, self.pathologies) from None

    def threshold_array(self) -> np.ndarray:
        return np.array([self.thresholds[p] for p in self.pathologies], dtype=np.float32)

    def positive(self, probs: np.ndarray) -> np.ndarray:
        """Boolean array of the same shape: prob >= the pathology's threshold (last axis = C)."""
        probs = np.asarray(probs)
        if probs.shape[-1] != len(self.pathologies):
            raise BundleError(
                f"positive: expected {len(self.pathologies)} probabilities on the last axis "
                f"({', '.join(self.pathologies)}), got shape {probs.shape}"
            )
        return probs >= self.threshold_array()

    def to(self, device: str | torch.device) -> "Bundle":
        self.device = resolve_device(device)
        self.classifier.to(self.device)
        if self.autoencoder is not None:
            self.autoencoder.to(self.device)
        return self

    def __repr__(self) -> str:
        ae = type(self.autoencoder).__name__ if self.autoencoder is not None else None
        return (
            f"Bundle(classifier={type(self.classifier).__name__}, autoencoder={ae}, "
            f"resolution={self.resolution}, input={self.input_transform}, pathologies={self.pathologies}, device={self.device})"
        )

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write bundle.json + state dicts into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "pathologies": self.pathologies,
            "resolution": self.resolution,
            "input_transform": self.input_transform,
            "thresholds": self.thresholds,
            "meta": self.meta,
            "classifier": _model_entry(self.classifier, CLASSIFIER_FILE, "classifier"),
            "autoencoder": (
                _model_entry(self.autoencoder, AUTOENCODER_FILE, "autoencoder")
                if self.autoencoder is not None
                else None
            ),
        }
        _save_state(self.classifier, directory / CLASSIFIER_FILE)
        if self.autoencoder is not None:
            _save_state(self.autoencoder, directory / AUTOENCODER_FILE)
        elif (directory / AUTOENCODER_FILE).exists():
            (directory / AUTOENCODER_FILE).unlink()
        tmp = directory / (BUNDLE_JSON + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        tmp.replace(directory / BUNDLE_JSON)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "auto") -> "Bundle":
        """Load a bundle directory written by :meth:`save`; raises BundleError when it is
        missing, incomplete, corrupt or does not fit the stored model description."""
        directory = Path(directory)
        if not directory.is_dir():
            raise BundleError(
                f"model bundle {directory} does not exist or is not a directory; "
                "train one with `cfviewer train --out DIR` or pass the right --bundle path"
            )
        doc_path = directory / BUNDLE_JSON
        if not doc_path.is_file():
            raise BundleError(
                f"{doc_path} is missing: {directory} is not a cfviewer model bundle "
                "(expected bundle.json + classifier.pt [+ autoencoder.pt])"
            )
        try:
            doc = json.loads(doc_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{doc_path} is not valid JSON ({exc}); re-save the bundle") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BundleError(f"{doc_path}: 'format' is not {FORMAT!r}; not a cfviewer model bundle")
        if doc.get("version") != VERSION:
            raise BundleError(
                f"{doc_path}: bundle version {doc.get('version')!r} is not supported "
                f"(this cfviewer reads version {VERSION})"
            )
        for key in ("pathologies", "resolution", "classifier"):
            if key not in doc:
                raise BundleError(f"{doc_path}: the key {key!r} is missing")
        classifier = _load_model(directory, doc["classifier"], "classifier")
        autoencoder = (
            _load_model(directory, doc["autoencoder"], "autoencoder")
            if doc.get("autoencoder")
            else None
        )
        stored = list(getattr(classifier, "pathologies", doc["pathologies"]))
        if stored != list(doc["pathologies"]):
            raise BundleError(
                f"{doc_path}: the classifier config predicts {stored} but the bundle lists "
                f"{doc['pathologies']}"
            )
        try:
            bundle = cls(
                classifier=classifier,
                autoencoder=autoencoder,
                pathologies=doc["pathologies"],
                resolution=int(doc["resolution"]),
                thresholds=doc.get("thresholds") or {},
                meta=doc.get("meta") or {},
                device=device,
                input_transform=doc.get("input_transform", CENTER_CROP),
            )
        except BundleError as exc:
            raise BundleError(f"{doc_path}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{doc_path}: invalid metadata ({exc})") from None
        bundle.directory = directory
        return bundle


def companion_dir(bundle: Any) -> Path | None:
    """The folder of a loaded bundle (None for one built in memory)."""
    d = getattr(bundle, "directory", None)
    return Path(d) if d is not None else None


def cached_companion(bundle: Any, attr: str) -> Any:
    """The companion model attached to ``bundle`` as ``attr`` (e.g. ``"_inpainter"``), moved to
    the bundle's device; None when none is attached (the caller then loads it from the folder)."""
    module = getattr(bundle, attr, None)
    if module is not None and next(module.parameters()).device != torch.device(bundle.device):
        module.to(bundle.device)
    return module


def companion_command(template: str, bundle: Any) -> str:
    """``template`` (a command with ``{dir}``) for this bundle's folder ("DIR" for one in memory)."""
    d = companion_dir(bundle)
    return template.format(dir=str(d) if d is not None else "DIR")


def read_companion_doc(bundle: Any, pt_name: str, json_name: str, fmt: str, version: int, *,
                       fix: str, in_memory: str, missing: str, missing_error: type[Exception],
                       error: type[Exception]) -> tuple[Path, dict[str, Any]]:
    """(weights path, JSON document) of a model trained for a bundle and saved beside it
    (DIR/<pt_name> + DIR/<json_name>: SAGen generators, the inpainter, the mask network).
    Raises ``missing_error(in_memory)`` for a bundle built in memory, ``missing_error(missing
    with {d} = the folder)`` when a file is absent, ``error`` naming ``fix`` when the JSON is
    unreadable or of another format / version. Identity checks and loading stay with the caller."""
    d = companion_dir(bundle)
    if d is None:
        raise missing_error(in_memory)
    pt, js = d / pt_name, d / json_name
    if not pt.is_file() or not js.is_file():
        raise missing_error(missing.format(d=d))
    try:
        doc = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{js} is not valid JSON ({exc}); retrain with `{fix}`") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt or doc.get("version") != version:
        raise error(f"{js}: not a {fmt} version {version} file; retrain with `{fix}`")
    return pt, doc


def resize_to_resolution(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """N x 1 x H x W square films resized (bilinear, antialiased) to ``resolution`` and clipped
    to [-1024, 1024]: the resize of :meth:`Bundle.model_input`, also used to make training
    phantoms rendered above the model resolution (``TrainConfig.render_scale``), so the models
    learn from the same kind of pixels they are shown."""
    if tuple(x.shape[-2:]) != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=True)
    return x.clamp(PIXEL_MIN, PIXEL_MAX)


def bundle_identity(directory: str | Path | None, bundle: Bundle | None = None) -> str:
    """The name a study records for the model that made its predictions:
    ``<folder name>@<first 12 hex of a sha256 over the folder's file names and file sha256s>``.

    Hashes the files of ``directory`` and loads nothing (no model is built: callable where
    only the folder is at hand). With ``directory`` None, the name of the in-memory
    ``bundle`` from its meta, ``in-memory:<meta source>:<meta seed>`` (whether or not it was
    loaded from a folder; :attr:`Bundle.identity` names a loaded bundle by its folder)."""
    if directory is None:
        return _in_memory_identity(getattr(bundle, "meta", {}) or {})
    d = Path(directory)
    h = hashlib.sha256()
    for f in sorted(p for p in d.iterdir() if p.is_file()):
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return f"{d.name}@{h.hexdigest()[:12]}"


def _in_memory_identity(meta: Mapping[str, Any]) -> str:
    return f"in-memory:{meta.get('source', 'bundle')}:{meta.get('seed', '')}"


# ---------------------------------------------------------------------- helpers
def _class_path(obj: object) -> str:
    t = type(obj)
    return f"{t.__module__}:{t.__qualname__}"


def _model_entry(model: nn.Module, filename: str, role: str) -> dict[str, Any]:
    config = getattr(model, "config", None)
    path = _class_path(model)
    if not callable(config) or not path.startswith("cfviewer."):
        raise BundleError(
            f"cannot save the {role} {path}: only cfviewer model classes with a config() "
            "method can be stored in a bundle"
        )
    return {"class": path, "config": config(), "file": filename}


def _save_state(model: nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _resolve_class(class_path: str, where: str) -> type:
    module_name, _, qualname = class_path.partition(":")
    if not module_name.startswith("cfviewer.") or not qualname:
        raise BundleError(
            f"{where}: model class {class_path!r} is not a cfviewer model class "
            "(expected 'cfviewer.models.<module>:<Class>')"
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise BundleError(f"{where}: model class {class_path!r} cannot be imported ({exc})") from None
    if not isinstance(obj, type) or not issubclass(obj, nn.Module):
        raise BundleError(f"{where}: {class_path!r} is not a torch module class")
    return obj


def _load_model(directory: Path, entry: Any, role: str) -> nn.Module:
    where = f"{directory / BUNDLE_JSON} [{role}]"
    if not isinstance(entry, dict) or "class" not in entry or "file" not in entry:
        raise BundleError(f"{where}: expected an object with 'class', 'config' and 'file'")
    cls = _resolve_class(str(entry["class"]), where)
    try:
        model = cls(**(entry.get("config") or {}))
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{where}: config does not fit {entry['class']} ({exc})") from None
    weights = directory / str(entry["file"])
    if not weights.is_file():
        raise BundleError(
            f"{weights} is missing: the bundle's {role} weights are needed "
            "(re-run `cfviewer train` or copy the whole bundle directory)"
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        raise BundleError(
            f"{weights} is corrupt or not a torch state dict ({type(exc).__name__}: {exc}); "
            "re-run `cfviewer train` or copy the file again"
        ) from None
    if not isinstance(state, dict):
        raise BundleError(f"{weights}: expected a state dict, found {type(state).__name__}")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise BundleError(
            f"{weights} does not fit {entry['class']} with the config in bundle.json: "
            f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''} "
            "(wrong model file for this bundle?)"
        )
    for k, v in expected.items():
        got = state[k]
        if not torch.is_tensor(got) or tuple(got.shape) != tuple(v.shape):
            shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
            raise BundleError(
                f"{weights}: tensor {k!r} has shape {shape}, expected {tuple(v.shape)} for "
                f"{entry['class']} with the config in bundle.json (weights of another model?)"
            )
    model.load_state_dict(state)
    return model


def random_bundle(
    resolution: int = 64,
    seed: int = 0,
    autoencoder: bool = True,
    pathologies: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> Bundle:
    """A small randomly initialised bundle for tests (deterministic per seed, CPU by default).

    ``resolution`` must be divisible by 16 (the autoencoder halves it four times)."""
    from cfviewer import PATHOLOGIES
    from cfviewer.models.autoencoder import ResNetAE
    from cfviewer.models.classifier import Classifier

    if resolution % 16:
        raise ValueError(f"random_bundle: resolution must be divisible by 16, got {resolution}")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        clf = Classifier(
            pathologies=pathologies or PATHOLOGIES, widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1),
            stem_width=8,
        )
        # Non-trivial residual branches so gradients/attributions are not degenerate.
        for m in clf.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.5, 1.5)
        ae = (
            ResNetAE(widths=(8, 16, 16, 16), latent_channels=8) if autoencoder else None
        )
    finally:
        torch.random.set_rng_state(gen_state)
    return Bundle(
        classifier=clf, autoencoder=ae, resolution=resolution,
        meta={"source": "random_bundle", "seed": seed}, device=device,
    )
