"""Adapter for torchxrayvision models (optional extra ``xrv``).

Builds a :class:`cfviewer.models.Bundle` from torchxrayvision's own model classes
(``xrv.models.DenseNet``, ``xrv.models.ResNet``, ``xrv.autoencoders.ResNetAE``) with weights
read from a **local file** the user gives. Nothing is downloaded: the classes are always
constructed with ``weights=None`` (or, for ``ResNet``, whose constructor insists on
downloading, built around a fresh torchvision ResNet-50 exactly as its constructor does).

Conventions kept (docs/ARCHITECTURE.md):

* input N x 1 x R x R in [-1024, 1024] (torchxrayvision's own convention, so no rescaling);
* the classifier returns **probabilities** N x C for the selected pathologies only. With
  operating-point thresholds (``op_threshs``: from the checkpoint, the ``op_threshs``
  argument or the metadata of a recognised torchxrayvision release) torchxrayvision's own
  ``op_norm`` calibration is applied, so 0.5 is the operating point; without them a plain
  sigmoid. Nobody applies a second sigmoid;
* the autoencoder's ``encode`` / ``decode`` work at 224 px and ``decode`` returns
  N x 1 x 224 x 224 clamped to [-1024, 1024].

Weight files accepted: a plain state dict, a checkpoint dict holding one under
``state_dict`` / ``model_state_dict`` / ``model`` / ``net`` / ``weights`` (with optional
``labels`` / ``pathologies`` / ``targets`` and ``op_threshs`` beside it), ``module.``-prefixed
keys (DataParallel), and torchxrayvision's released ``.pt`` files, which are whole pickled
modules. Unpickling runs code from the file, so those are refused by default
(``trust_pickle=False``): with ``trust_pickle=True`` (files from a source you trust only)
they are read with ``torch.load(weights_only=False)`` after a ``weights_only=True`` attempt
failed, and a :class:`PickleTrustWarning` naming the file and its sha256 is emitted first.

The bundle can be saved with ``Bundle.save`` and loaded with ``Bundle.load`` (in an
environment where torchxrayvision is installed), like any cfviewer bundle.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cfviewer import PATHOLOGIES
from cfviewer.errors import BundleError, CfviewerError, UnknownPathologyError
from cfviewer.files import sha256_file

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install torch==2.14.1 torchvision==0.29.1 -e '.[xrv]'"
ARCHS = ("densenet121", "resnet50")
NATIVE_RESOLUTION = {"densenet121": 224, "resnet50": 512}
AE_RESOLUTION = 224
PIXEL_MIN, PIXEL_MAX = -1024.0, 1024.0

# Other spellings of torchxrayvision labels (keys and values normalised by _norm).
_ALIASES = {
    "pleural effusion": "effusion",
    "airspace opacity": "lung opacity",
    "opacity": "lung opacity",
    "ptx": "pneumothorax",
}
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_LABEL_KEYS = ("labels", "pathologies", "targets")


class XrvNotInstalledError(BundleError):
    """torchxrayvision (or torchvision, which it needs) cannot be imported."""


class PickleTrustWarning(UserWarning):
    """A weights file is being unpickled (``trust_pickle=True``): code stored in it runs."""


def import_xrv():
    """Import torchxrayvision or raise :class:`XrvNotInstalledError` with the install command."""
    try:
        import torchxrayvision as xrv  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        raise XrvNotInstalledError(
            "the torchxrayvision adapter needs the optional extra 'xrv', which is not installed "
            f"in this environment ({exc}). Install it with: {INSTALL_HINT} "
            "(torchxrayvision needs torchvision, which here exists only for torch 2.14.1; "
            "keep it out of the main venv: `bash .ci/xrv.sh` builds a separate .venv-xrv)"
        ) from None
    return xrv


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", str(name))).strip().lower()


def _canonical(name: str) -> str:
    n = _norm(name)
    return _ALIASES.get(n, n)


# ---------------------------------------------------------------------- modules
def _no_inplace_relu(module: nn.Module) -> None:
    """In-place ReLUs break captum's backward hooks (guided backprop); outputs are identical."""
    for m in module.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False


def _build_xrv_model(
    arch: str, num_classes: int, labels: Sequence[str], op_threshs: torch.Tensor | None
) -> nn.Module:
    xrv = import_xrv()
    if arch == "densenet121":
        model = xrv.models.DenseNet(
            weights=None, num_classes=num_classes, op_threshs=op_threshs,
            apply_sigmoid=op_threshs is None,
        )
    elif arch == "resnet50":
        # xrv.models.ResNet.__init__ always downloads release weights, so build the instance
        # the way its constructor does (torchvision ResNet-50, single-channel stem) without
        # calling it; forward/op_threshs handling stay torchxrayvision's own.
        import torchvision  # noqa: PLC0415 - present whenever torchxrayvision imports

        model = xrv.models.ResNet.__new__(xrv.models.ResNet)
        nn.Module.__init__(model)
        model.weights = None
        model.apply_sigmoid = op_threshs is None
        model.model = torchvision.models.resnet50(num_classes=num_classes, weights=None)
        model.model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        model.register_buffer("op_threshs", op_threshs)
    else:
        raise BundleError(f"unknown torchxrayvision architecture {arch!r}: choose one of {', '.join(ARCHS)}")
    model.targets = list(labels)
    model.pathologies = model.targets
    _no_inplace_relu(model)
    return model.eval()


class XrvClassifier(nn.Module):
    """A torchxrayvision classifier restricted to the selected pathologies.

    ``forward(x)`` takes N x 1 x R x R in [-1024, 1024] (resized to the architecture's native
    resolution inside when R differs, as torchxrayvision does) and returns probabilities
    N x C in the order of ``pathologies``.

    Args:
        arch: "densenet121" or "resnet50".
        labels: names of all outputs of the underlying model, in output order ('' = unused).
        pathologies: the exposed names, in order.
        indices: output column of each exposed pathology (default: position in ``labels``).
        op_threshs: per-output operating points (NaN = none) or None for a plain sigmoid.
    """

    def __init__(
        self,
        arch: str,
        labels: Sequence[str],
        pathologies: Sequence[str],
        indices: Sequence[int] | None = None,
        op_threshs: Sequence[float] | None = None,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise BundleError(f"unknown torchxrayvision architecture {arch!r}: choose one of {', '.join(ARCHS)}")
        self.arch = arch
        self.labels = list(labels)
        self.pathologies: list[str] = list(pathologies)
        if indices is None:
            indices = [self.labels.index(p) for p in self.pathologies]
        self.indices = [int(i) for i in indices]
        if len(self.indices) != len(self.pathologies) or not all(
            0 <= i < len(self.labels) for i in self.indices
        ):
            raise BundleError(f"XrvClassifier: indices {self.indices} do not fit {len(self.labels)} outputs")
        th = None if op_threshs is None else torch.tensor([float(t) for t in op_threshs])
        self._op_threshs = None if th is None else [float(t) for t in th]
        self.native_resolution = NATIVE_RESOLUTION[arch]
        self.model = _build_xrv_model(arch, len(self.labels), self.labels, th)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable), stored in bundle.json by Bundle.save."""
        return {
            "arch": self.arch,
            "labels": list(self.labels),
            "pathologies": list(self.pathologies),
            "indices": list(self.indices),
            "op_threshs": None if self._op_threshs is None else list(self._op_threshs),
        }

    @property
    def calibrated(self) -> bool:
        """True when torchxrayvision's op_norm maps the operating points to 0.5."""
        return self._op_threshs is not None

    @property
    def target_layer(self) -> nn.Module:
        """The last convolutional block (for Grad-CAM): DenseNet's ``features`` (its output is
        norm5's, which xrv's forward then rectifies with an in-place functional ReLU; captum's
        layer hooks hand the rest of the network a copy, so that is safe), ResNet's ``layer4``."""
        if self.arch == "densenet121":
            return self.model.features
        return self.model.model.layer4

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise BundleError(
                f"{self.arch}: expected N x 1 x H x W images in [-1024, 1024], got shape {tuple(x.shape)}"
            )
        r = self.native_resolution
        if tuple(x.shape[-2:]) != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores of the selected pathologies, N x C."""
        x = self._fit(x)
        if self.arch == "densenet121":
            out = self.model.classifier(self.model.features2(x))
        else:
            out = self.model.model(x)
        return out[:, self.indices]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities N x C (torchxrayvision's calibrated output, or a sigmoid)."""
        return self.model(self._fit(x))[:, self.indices]


class XrvAutoencoder(nn.Module):
    """torchxrayvision's ResNetAE (ResNet-101 encoder) with the cfviewer encode/decode contract:
    ``encode`` takes N x 1 x 224 x 224 in [-1024, 1024]; ``decode`` returns the same shape,
    clamped to [-1024, 1024]."""

    resolution = AE_RESOLUTION

    def __init__(self) -> None:
        super().__init__()
        xrv = import_xrv()
        self.ae = xrv.autoencoders.ResNetAE(weights=None)
        self.ae.weights = None  # its __repr__ reads this attribute
        _no_inplace_relu(self.ae)
        self.ae.eval()

    def config(self) -> dict[str, Any]:
        return {}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != (r, r):
            raise BundleError(
                f"torchxrayvision ResNetAE encodes N x 1 x {r} x {r} images, got shape "
                f"{tuple(x.shape)}; resize to {r} px first (Bundle.preprocess does)"
            )
        return self.ae.encode(x, check_resolution=False)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.ae.decode(z, image_size=[z.shape[0], 1, self.resolution, self.resolution])
        return out.clamp(PIXEL_MIN, PIXEL_MAX)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


# ---------------------------------------------------------------------- weight files
class _Loaded:
    def __init__(self, state: dict[str, torch.Tensor], labels: list[str] | None,
                 op_threshs: list[float] | None, pickled: bool, sha256: str):
        self.state, self.labels, self.op_threshs = state, labels, op_threshs
        self.pickled, self.sha256 = pickled, sha256


def _as_state(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, nn.Module):
        # Modules pickled by old torch versions lack this attribute (as torchxrayvision patches).
        for m in obj.modules():
            if not hasattr(m, "_non_persistent_buffers_set"):
                m._non_persistent_buffers_set = set()
        return dict(obj.state_dict())
    if isinstance(obj, Mapping) and obj and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()
    ):
        return dict(obj)
    return None


def _read_weights(path: str | os.PathLike, role: str, trust_pickle: bool) -> _Loaded:
    p = Path(path).expanduser()
    if not p.is_file():
        raise BundleError(
            f"{role} weights file {p} does not exist; pass the local path of the downloaded "
            "torchxrayvision weights (they cannot be downloaded by cfviewer)"
        )
    pickled = False
    sha256 = sha256_file(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - torch raises many types
        # torch's weights-only unpickler refuses objects other than tensors and plain
        # containers with this UnpicklingError; anything else means the file is not readable.
        refused_objects = isinstance(first, pickle.UnpicklingError) and "weights only load failed" in str(first).lower()
        if not trust_pickle and not refused_objects:
            reason = (str(first).splitlines() or [""])[0]
            raise BundleError(
                f"{role} weights file {p} is corrupt or not a torch file "
                f"({type(first).__name__}: {reason}); download it again"
            ) from None
        if not trust_pickle:  # pickled objects: refused, nothing in the file has run
            raise BundleError(
                f"{role} weights file {p} holds pickled objects, not only tensors; "
                "it may be a pickled module (like torchxrayvision's released .pt files). Loading "
                "it would run code stored in the file, so it is refused: re-save it as a state dict "
                "in a sandbox (torch.save(torch.load(f, weights_only=False).state_dict(), 'plain.pt')), "
                "or pass trust_pickle=True only if you trust its source"
            ) from None
        warnings.warn(
            f"{role}: unpickling {p} (sha256 {sha256}) with torch.load(weights_only=False) because "
            "trust_pickle=True; this runs any code stored in the file, so use it only for files "
            "from a source you trust",
            PickleTrustWarning, stacklevel=3,
        )
        try:
            obj = torch.load(p, map_location="cpu", weights_only=False)
            pickled = True
        except Exception as exc:  # noqa: BLE001
            raise BundleError(
                f"{role} weights file {p} is corrupt or not a torch file "
                f"({type(exc).__name__}: {exc}); download it again"
            ) from None
        log.info("%s: loaded %s with weights_only=False (pickled objects; trust_pickle=True)", role, p)
    labels = op = None
    state = _as_state(obj)
    if state is None and isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            if key in obj and (state := _as_state(obj[key])) is not None:
                break
        for key in _LABEL_KEYS:
            if isinstance(obj.get(key), (list, tuple)):
                labels = [str(x) for x in obj[key]]
                break
        if obj.get("op_threshs") is not None:
            op = [float(t) for t in torch.as_tensor(obj["op_threshs"]).flatten()]
    if state is None:
        keys = list(obj)[:6] if isinstance(obj, Mapping) else []
        raise BundleError(
            f"{role} weights file {p} holds a {type(obj).__name__}"
            + (f" with keys {keys}" if keys else "")
            + f", not a state dict, a checkpoint with one of {list(_STATE_KEYS)}, or a module"
        )
    if isinstance(obj, nn.Module):
        labels = labels or [str(x) for x in getattr(obj, "targets", None) or getattr(obj, "pathologies", None) or []] or None
        th = getattr(obj, "op_threshs", None)
        if th is not None:
            op = [float(t) for t in torch.as_tensor(th).flatten()]
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if "op_threshs" in state:
        op = [float(t) for t in state.pop("op_threshs").flatten()]
    return _Loaded(state, labels, op, pickled, sha256)


def _mismatch_error(path: Path, what: str, state: Mapping[str, Any], expected: Mapping[str, torch.Tensor]) -> BundleError:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
    return BundleError(
        f"weights file {path} does not fit {what}: {'; '.join(parts)}. "
        "Is it the right file, and the right arch= (densenet121 / resnet50)?"
    )


def _load_into(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    # op_threshs is set from the checkpoint / release / argument, not loaded with the weights.
    expected = {k: v for k, v in module.state_dict().items() if k != "op_threshs"}
    ok = set(state) == set(expected) and all(
        tuple(state[k].shape) == tuple(v.shape) for k, v in expected.items()
    )
    if not ok:
        raise _mismatch_error(path, what, state, expected)
    module.load_state_dict(state, strict=False)


def _num_outputs(arch: str, state: Mapping[str, torch.Tensor], path: Path) -> int:
    key = "classifier.weight" if arch == "densenet121" else "fc.weight"
    w = state.get(key)
    if w is None or w.ndim != 2:
        other = "fc.weight" if arch == "densenet121" else "classifier.weight"
        hint = f" (it has {other!r}: try arch={'resnet50' if arch == 'densenet121' else 'densenet121'!r})" if other in state else ""
        raise BundleError(
            f"weights file {path} does not fit torchxrayvision {arch}: no {key!r} tensor"
            f"{hint}; found keys like {list(state)[:3]}"
        )
    return int(w.shape[0])


def _release_meta(xrv: Any, path: Path, arch: str, name: str | None) -> dict[str, Any] | None:
    """Metadata (labels, op_threshs) of a torchxrayvision release, by name or by file name.
    Only the metadata dict is read; nothing is downloaded."""
    urls = xrv.models.model_urls
    if name is not None:
        if name not in urls:
            known = sorted(k for k in urls if k.startswith(("densenet", "resnet")))
            raise BundleError(f"unknown torchxrayvision release {name!r}: choose one of {', '.join(known)}")
        return urls[name]
    for entry in urls.values():
        if os.path.basename(entry.get("weights_url", "")) == path.name:
            return entry
    return None


# ---------------------------------------------------------------------- public API
def load_xrv_bundle(
    weights_path: str | os.PathLike,
    *,
    arch: str = "densenet121",
    ae_weights_path: str | os.PathLike | None = None,
    pathologies: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    op_threshs: Sequence[float] | None = None,
    xrv_weights: str | None = None,
    resolution: int | None = None,
    trust_pickle: bool = False,
    device: str | torch.device = "auto",
):
    """A :class:`~cfviewer.models.Bundle` around torchxrayvision models with local weights.

    Args:
        weights_path: local file with the classifier weights (state dict, checkpoint dict, or
            a torchxrayvision release ``.pt`` file).
        arch: "densenet121" (``xrv.models.DenseNet``) or "resnet50" (``xrv.models.ResNet``).
        ae_weights_path: local file with ``xrv.autoencoders.ResNetAE`` weights, or None.
        pathologies: names to expose, in order (xrv spellings or aliases such as
            'Pleural Effusion'); default: those of ``cfviewer.PATHOLOGIES`` the model predicts
            (the others are listed in ``bundle.meta['xrv']['missing_pathologies']`` and logged).
        labels: names of the model's outputs in order; default from the checkpoint, the
            release metadata, or torchxrayvision's 18 default targets.
        op_threshs: per-output operating points; default from the checkpoint or the release.
        xrv_weights: name of the torchxrayvision release these weights are (e.g.
            "densenet121-res224-all") to take labels / op_threshs from its metadata; default:
            recognised from the file name. Never downloads.
        resolution: the bundle's input side; default 224 (the AE's) when an AE is given or for
            densenet121, else 512 for resnet50.
        trust_pickle: default False: a file that is not plain tensors (a pickled module, such
            as torchxrayvision's released ``.pt`` files) is refused with a BundleError and
            nothing in it runs. True allows ``torch.load(weights_only=False)`` after a
            ``weights_only=True`` attempt fails, which runs code stored in the file (a
            :class:`PickleTrustWarning` naming the file and its sha256 is emitted first); only
            for files from a source you trust.
        device: "auto" (CUDA when present), "cpu", ...

    Raises:
        XrvNotInstalledError: the ``xrv`` extra is not installed.
        BundleError: a file is missing/corrupt or does not fit the architecture, bad arguments.
        UnknownPathologyError: a requested pathology is not predicted by the model.
    """
    from cfviewer.models.bundle import Bundle  # noqa: PLC0415 - avoid import cycles

    xrv = import_xrv()
    if arch not in ARCHS:
        raise BundleError(f"unknown torchxrayvision architecture {arch!r}: choose one of {', '.join(ARCHS)}")
    path = Path(weights_path).expanduser()
    loaded = _read_weights(path, f"classifier ({arch})", trust_pickle)
    state = loaded.state
    if arch == "resnet50" and "fc.weight" not in state and "model.fc.weight" in state:
        state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
    n_out = _num_outputs(arch, state, path)

    release = _release_meta(xrv, path, arch, xrv_weights)
    if labels is None:
        labels = loaded.labels or (release or {}).get("labels")
        if labels is None and n_out == len(xrv.datasets.default_pathologies):
            labels = list(xrv.datasets.default_pathologies)
    if labels is None:
        raise BundleError(
            f"weights file {path} has {n_out} outputs and carries no label names; pass "
            f"labels=[...] ({n_out} names in output order)"
        )
    labels = [str(x) for x in labels]
    if len(labels) != n_out:
        raise BundleError(
            f"weights file {path} has {n_out} outputs but {len(labels)} labels were given/found "
            f"({labels[:4]}...); pass labels= with exactly {n_out} names"
        )
    if op_threshs is None:
        op_threshs = loaded.op_threshs
        if op_threshs is None and release is not None and "op_threshs" in release:
            op_threshs = list(release["op_threshs"])
    if op_threshs is not None:
        op_threshs = [float(t) for t in op_threshs]
        if len(op_threshs) != n_out:
            raise BundleError(
                f"{len(op_threshs)} operating points (op_threshs) for {n_out} outputs of {path}"
            )

    # Which outputs are predicted: a name, and an operating point when thresholds exist.
    predicted: dict[str, int] = {}
    for i, lab in enumerate(labels):
        if lab and not (op_threshs is not None and math.isnan(op_threshs[i])):
            predicted.setdefault(_canonical(lab), i)
    cf_names = {_canonical(p): p for p in PATHOLOGIES}
    available = [cf_names.get(_canonical(labels[i]), labels[i]) for i in predicted.values()]
    missing: list[str] = []
    if pathologies is None:
        selected = [(p, predicted[_canonical(p)]) for p in PATHOLOGIES if _canonical(p) in predicted]
        missing = [p for p in PATHOLOGIES if _canonical(p) not in predicted]
        if not selected:
            raise BundleError(
                f"weights file {path} predicts none of {', '.join(PATHOLOGIES)} "
                f"(it predicts {', '.join(available)}); pass pathologies=[...]"
            )
        if missing:
            log.warning(
                "torchxrayvision model %s does not predict %s; the bundle has %s",
                path.name, ", ".join(missing), ", ".join(p for p, _ in selected),
            )
    else:
        selected = []
        for p in pathologies:
            key = _canonical(p)
            if key not in predicted:
                raise UnknownPathologyError(str(p), available)
            selected.append((cf_names.get(key, labels[predicted[key]]), predicted[key]))
        names = [n for n, _ in selected]
        if len(set(names)) != len(names):
            raise BundleError(f"pathologies {list(pathologies)} name the same output twice")

    clf = XrvClassifier(
        arch, labels, [n for n, _ in selected], [i for _, i in selected], op_threshs,
    )
    _load_into(clf.model.model if arch == "resnet50" else clf.model, state, path,
               f"torchxrayvision {arch} with {n_out} outputs")

    ae = None
    ae_info = None
    if ae_weights_path is not None:
        ae_path = Path(ae_weights_path).expanduser()
        ae_loaded = _read_weights(ae_path, "autoencoder (ResNetAE)", trust_pickle)
        ae = XrvAutoencoder()
        _load_into(ae.ae, ae_loaded.state, ae_path, "torchxrayvision ResNetAE (ResNet-101, '101-elastic')")
        ae_info = {"path": str(ae_path), "sha256": ae_loaded.sha256, "pickled": ae_loaded.pickled}

    if resolution is None:
        resolution = AE_RESOLUTION if ae is not None else NATIVE_RESOLUTION[arch]
    resolution = int(resolution)
    if ae is not None and resolution != AE_RESOLUTION:
        raise BundleError(
            f"resolution={resolution} does not fit the torchxrayvision autoencoder, which works at "
            f"{AE_RESOLUTION} px; leave resolution unset"
        )
    meta = {
        "source": "torchxrayvision",
        "xrv": {
            "version": getattr(xrv, "__version__", "unknown"),
            "arch": arch,
            "weights_path": str(path),
            "weights_sha256": loaded.sha256,
            "weights_pickled": loaded.pickled,
            "release": xrv_weights or (os.path.basename(release["weights_url"]) if release else None),
            "labels": labels,
            "calibrated": op_threshs is not None,
            "missing_pathologies": missing,
            "autoencoder": ae_info,
        },
    }
    try:
        return Bundle(classifier=clf, autoencoder=ae, resolution=resolution, meta=meta, device=device)
    except CfviewerError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise BundleError(f"cannot place the torchxrayvision bundle on device {device!r}: {exc}") from None
