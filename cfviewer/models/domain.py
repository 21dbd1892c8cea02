"""A bundle's training domain: a reference distribution of its training images and the test that
says whether a new image lies outside it.

A model trained on phantoms is near chance on real films and still calls many of them positive;
nothing in its outputs says so. The bundle therefore carries, in ``bundle.meta["domain"]``:

* ``description``: what it was trained on ("synthetic phantoms"), shown in every warning, and
  ``details`` ("cfviewer.phantoms, cfviewer 0.1.0, 128 px");
* a reference distribution of an **image-statistics score** in model space (the R x R input the
  classifier sees): 18 statistics per image, namely seven intensity quantiles (2-98 %), the mean
  absolute horizontal / vertical difference and Laplacian at three scales (full, 1/2, 1/4; log),
  and the share of pixels at the black and white ends (< -1000, > 1000). Their mean, scale and
  shrunk (Ledoit-Wolf) inverse covariance are fitted on the held-out reference images; the score
  of an image is its Mahalanobis distance to them;
* the quantiles of that distance on the reference images themselves, each scored *out of fold*
  (cross-fitting: the images are cut into ``FOLDS`` folds, an image and its augmented copy in the
  same one, and every image is scored by a reference fitted on the other folds), and the
  threshold: their 99.5th percentile by default. An image whose distance exceeds the threshold is
  *outside the training domain*. The reference that is stored is fitted on all the images.

  Why cross-fitting: with a fixed fit / calibration split (60 / 40 %, as before) the threshold
  was the 99.5th percentile of 800 distances, i.e. set by the 4th-largest, and the clinical
  phantoms (AP films, collimation, rare acquisitions) have a tail of about 1 % far out: on the
  stage-2 demo bundle the split put that tail in the calibration part, the threshold came out at
  11.5 (9.2 for stage 1) and 16 % of real films fell inside. Scoring all 2,000 images out of
  fold makes the percentile rest on 10 images (and every fit uses 80 % of them).

Why these statistics rather than the autoencoder's reconstruction error: on the demo bundle the
autoencoder reconstructs the 64 px NIH films (smooth once upsampled) *better* than held-out
phantoms (median MAE 34 vs 49), and phantoms generated at 256 px and downscaled better still
(29): reconstruction error measures high-frequency content, not the domain. The statistics do
not need the model's weights, so an import can be checked from bundle.json alone.

For a bundle trained on phantoms the reference images are its validation split (held out from
training; ``cfviewer train`` records the domain at the end, ``cfviewer bundle-domain`` recreates
the same split for an existing bundle), each also once through the training augmentation so that
both phantoms as generated and the variation the model was trained on are inside. On the demo
bundle (stage 2, threshold 8.96): 0 of 200 held-out phantoms (seed 2026, drawn at 256 px as in
training; largest distance 8.1) and 0 of 30 224-px 16-bit PNG phantoms (the demo study's cases)
are flagged, 1.5 % of augmented held-out phantoms, and 205 of 206 real films (NIH ChestX-ray14,
TBX11K, SIIM DICOMs, pydicom's RG1 CR; 999 of the 1,000 NIH films; smallest distance 8.2).
The margin between the most unusual phantom and the most phantom-like real film is thin.
Phantoms drawn at >= 3 x the bundle's resolution and downscaled are smoother than the training
images and start to be flagged (a 64 px bundle: 20-40 % of 224 px phantoms).
``cfviewer bundle-domain --images DIR`` builds the reference from any folder of training-domain
images instead (a model trained on real films).

The images are compared in model space: the centred square field of view resized to the
bundle's resolution (the bundle's own ``model_input`` when it has one), clipped to
[-1024, 1024].
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from cfviewer.errors import BundleError, CfviewerError

META_KEY = "domain"
FORMAT = 1
SCORE = "image-statistics-mahalanobis-v1"
QUANTILES = (2, 10, 25, 50, 75, 90, 98)
FEATURES: tuple[str, ...] = (
    *(f"intensity_q{q:02d}" for q in QUANTILES),
    *(f"{k}_scale{s}" for s in (1, 2, 4) for k in ("log_abs_dx", "log_abs_dy", "log_abs_laplacian")),
    "share_below_-1000",
    "share_above_1000",
)
DEFAULT_QUANTILE = 99.5
FOLDS = 5
MIN_REFERENCE = 40
REPORTED_QUANTILES = (50, 90, 95, 99, 99.5, 100)
BATCH = 64
# Smallest spread of a statistic: a statistic that (almost) never varies on the reference images
# must not turn every tiny deviation into an enormous distance.
_SCALE_FLOOR = np.array([8.0] * len(QUANTILES) + [0.01] * 9 + [0.002, 0.002])
_DOMAIN_SALT = 0x646F6D61  # "doma": the augmentation seeds of the reference images


class DomainError(CfviewerError):
    """A stored domain reference is malformed, or one cannot be built."""


# ------------------------------------------------------------------------------ the score ---

def image_features(x: np.ndarray) -> np.ndarray:
    """The statistics of FEATURES for N x R x R (or R x R) model-space images -> N x F float64."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise DomainError(f"image_features: expected N x R x R images, got shape {a.shape}")
    n = a.shape[0]
    flat = a.reshape(n, -1).astype(np.float64)
    q = np.percentile(flat, QUANTILES, axis=1).T
    tex = []
    y = a.astype(np.float64)
    for _ in range(3):
        dx = np.abs(np.diff(y, axis=2)).mean((1, 2))
        dy = np.abs(np.diff(y, axis=1)).mean((1, 2))
        lap = np.abs(4 * y[:, 1:-1, 1:-1] - y[:, :-2, 1:-1] - y[:, 2:, 1:-1]
                     - y[:, 1:-1, :-2] - y[:, 1:-1, 2:]).mean((1, 2))
        tex += [np.log1p(dx), np.log1p(dy), np.log1p(lap)]
        h, w = (y.shape[1] // 2) * 2, (y.shape[2] // 2) * 2
        y = y[:, :h, :w].reshape(n, h // 2, 2, w // 2, 2).mean((2, 4))
    ext = [(flat < -1000).mean(1), (flat > 1000).mean(1)]
    return np.concatenate([q, np.stack(tex, 1), np.stack(ext, 1)], axis=1)


def _ledoit_wolf(z: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrinkage of the covariance of z (N x F) towards a scaled identity."""
    n, p = z.shape
    zc = z - z.mean(0)
    s = zc.T @ zc / n
    mu = float(np.trace(s)) / p
    target = mu * np.eye(p)
    d2 = float(((s - target) ** 2).sum())
    b2 = float(sum(((np.outer(r, r) - s) ** 2).sum() for r in zc)) / n ** 2
    a = 1.0 if d2 <= 0 else min(b2, d2) / d2
    return (1 - a) * s + a * target, a


def _fit_stats(feats: np.ndarray) -> dict[str, Any]:
    """Mean, scale and shrunk inverse covariance of the statistics (N x F)."""
    mean = feats.mean(0)
    scale = np.maximum(feats.std(0), _SCALE_FLOOR[: feats.shape[1]])
    cov, shrink = _ledoit_wolf((feats - mean) / scale)
    precision = np.linalg.inv(cov)
    precision = (precision + precision.T) / 2
    return {"mean": mean.tolist(), "scale": scale.tolist(), "precision": precision.tolist(),
            "shrinkage": float(shrink)}


def fold_of(groups: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """The fold of each image: its group (an image and its augmented copies share one), the
    distinct group ids dealt round-robin in sorted order."""
    _, first = np.unique(np.asarray(groups), return_inverse=True)
    return first % int(folds)


def fit_reference(feats: np.ndarray, groups: np.ndarray | None = None, *,
                  quantile: float = DEFAULT_QUANTILE, folds: int = FOLDS) -> dict[str, Any]:
    """The reference fitted on all ``feats`` (N x F), and the threshold: the ``quantile`` of the
    out-of-fold distances (each image scored by a reference fitted on the other ``folds`` - 1
    folds; ``groups`` keep an image and its augmented copy in one fold)."""
    feats = np.asarray(feats, np.float64)
    groups = np.arange(len(feats)) if groups is None else np.asarray(groups)
    if len(groups) != len(feats):
        raise DomainError(f"fit_reference: {len(groups)} groups for {len(feats)} images")
    fold = fold_of(groups, folds)
    if len(np.unique(groups)) < 2 * folds:
        raise DomainError(f"a domain reference needs at least {2 * folds} distinct images")
    d_oof = np.zeros(len(feats))
    for k in range(int(folds)):
        held = fold == k
        d_oof[held] = _mahalanobis(_fit_stats(feats[~held]), feats[held])
    ref = _fit_stats(feats)
    d_fit = _mahalanobis(ref, feats)
    ref["calibration"] = f"{int(folds)}-fold cross-fitted: each reference image scored by a fit on the other folds"
    ref["calibration_quantiles"] = {_qkey(q): float(np.percentile(d_oof, q)) for q in REPORTED_QUANTILES}
    ref["fit_quantiles"] = {_qkey(q): float(np.percentile(d_fit, q)) for q in REPORTED_QUANTILES}
    ref["threshold_quantile"] = float(quantile)
    ref["threshold"] = float(np.percentile(d_oof, quantile))
    return ref


def _qkey(q: float) -> str:
    return f"{q:g}"


def _mahalanobis(ref: Mapping[str, Any], feats: np.ndarray) -> np.ndarray:
    z = (np.asarray(feats, np.float64) - np.asarray(ref["mean"])) / np.asarray(ref["scale"])
    p = np.asarray(ref["precision"])
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", z, p, z), 0.0))


def distances(domain: Mapping[str, Any], images: np.ndarray) -> np.ndarray:
    """Distance of each model-space image (N x R x R) to the reference (> threshold = outside)."""
    return _mahalanobis(domain, image_features(images))


# --------------------------------------------------------------------------- model space ---

def model_space(images: Iterable[np.ndarray] | np.ndarray, resolution: int, bundle: Any = None) -> np.ndarray:
    """H x W images (any sizes) -> N x R x R float32 in [-1024, 1024]: the bundle's own
    ``model_input`` when it has one, else the same field of view (the centred square, resized to
    R; cfviewer.imaging.resize) computed without the model."""
    imgs = [images] if isinstance(images, np.ndarray) and images.ndim == 2 else list(images)
    if not imgs:
        return np.zeros((0, int(resolution), int(resolution)), np.float32)
    fn = getattr(bundle, "model_input", None) if bundle is not None else None
    if callable(fn):
        t = fn([np.asarray(i, np.float32) for i in imgs])
        a = t.detach().float().cpu().numpy() if hasattr(t, "detach") else np.asarray(t, np.float32)
        a = a.reshape(len(imgs), a.shape[-2], a.shape[-1])
    else:
        from cfviewer import imaging

        a = np.stack([imaging.resize(np.asarray(i, np.float32), int(resolution)) for i in imgs])
    return np.clip(a, -1024.0, 1024.0).astype(np.float32)


# ------------------------------------------------------------------- building a reference ---

def reference_images(images: np.ndarray, *, augment: Mapping[str, float] | None = None,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """N x R x R reference images -> (images, groups): with ``augment`` (kwargs of
    cfviewer.models.data.augment) every image once more, augmented (deterministic given
    ``seed``), in the group of its original."""
    imgs = np.asarray(images, np.float32)
    n = len(imgs)
    if n < MIN_REFERENCE:
        raise DomainError(f"a domain reference needs at least {MIN_REFERENCE} images, got {n}")
    groups = np.arange(n)
    if augment is None:
        return imgs, groups
    import torch

    from cfviewer.models.data import augment as do_augment

    word = np.random.SeedSequence([int(seed), _DOMAIN_SALT]).generate_state(1, dtype=np.uint32)[0]
    x = torch.from_numpy(np.ascontiguousarray(imgs))[:, None]
    aug = do_augment(x, torch.Generator().manual_seed(int(word)), **dict(augment))[:, 0].numpy()
    return np.concatenate([imgs, aug]), np.concatenate([groups, groups])


def build_domain(images: np.ndarray, *, description: str, source: str, resolution: int,
                 augment: Mapping[str, float] | None = None, seed: int = 0,
                 quantile: float = DEFAULT_QUANTILE, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``bundle.meta["domain"]`` entry for model-space reference images (N x R x R)."""
    from cfviewer import __version__

    imgs = np.asarray(images, np.float32)
    if imgs.ndim != 3 or imgs.shape[1:] != (resolution, resolution):
        raise DomainError(f"reference images must be N x {resolution} x {resolution}, got {imgs.shape}")
    ref_imgs, groups = reference_images(imgs, augment=augment, seed=seed)
    ref = fit_reference(image_features(ref_imgs), groups, quantile=quantile)
    return {
        "format": FORMAT,
        "score": SCORE,
        "description": description,
        "source": source,
        "resolution": int(resolution),
        "model_space": "centred square field of view resized to the resolution, clipped to [-1024, 1024]",
        "features": list(FEATURES),
        "n_fit": int(len(ref_imgs)),
        "n_calibration": int(len(ref_imgs)),
        "augmented": None if augment is None else {"copies": 1, "kwargs": dict(augment), "seed": int(seed)},
        "cfviewer": __version__,
        **ref,
        **dict(extra or {}),
    }


PHANTOMS = "synthetic phantoms"


def phantom_details(resolution: int) -> str:
    from cfviewer import __version__

    return f"cfviewer.phantoms, cfviewer {__version__}, {int(resolution)} px"


def phantom_domain(images: np.ndarray, *, resolution: int, augment: Mapping[str, float] | None,
                   seed: int, dataset_seed: int | None = None, phantoms: Mapping[str, Any] | None = None,
                   quantile: float = DEFAULT_QUANTILE) -> dict[str, Any]:
    """The domain of a bundle trained on phantoms, from its (held-out) validation phantoms."""
    return build_domain(
        images, description=PHANTOMS, source="phantoms", resolution=resolution,
        augment=augment, seed=seed, quantile=quantile,
        extra={"details": phantom_details(resolution),
               "reference": {"what": "the validation split of training (held out from training)",
                             "dataset_seed": dataset_seed, "n": int(len(images)),
                             "phantoms": dict(phantoms or {})}},
    )


def phantom_domain_for_bundle(meta: Mapping[str, Any], resolution: int, *, n: int | None = None,
                              quantile: float = DEFAULT_QUANTILE, progress: bool = False) -> dict[str, Any]:
    """Recreate the domain ``cfviewer train`` records, for an existing phantom-trained bundle:
    its validation phantoms again (from ``meta["training"]``), without retraining."""
    from cfviewer.models.data import phantom_data

    tr = (meta or {}).get("training") or {}
    cfg = tr.get("config") or {}
    seeds = tr.get("data_seeds") or {}
    if "val" not in seeds or not cfg:
        raise DomainError(
            "this bundle's metadata does not say how it was trained on phantoms (meta.training.config "
            "and data_seeds); give its training-domain images with --images DIR and a --description")
    n_val = int(n or tr.get("n_val") or cfg.get("n_val") or 1000)
    val = phantom_data(n_val, int(seeds["val"]), int(resolution), cfg.get("phantoms") or {},
                       progress=progress, desc="reference phantoms", render_scale=int(cfg.get("render_scale", 1)))
    images = val.images.float().numpy()
    return phantom_domain(images, resolution=int(resolution), augment=cfg.get("augment") or {},
                          seed=int(cfg.get("seed", 0)), dataset_seed=int(seeds["val"]),
                          phantoms=cfg.get("phantoms") or {}, quantile=quantile)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".npy", ".tif", ".tiff")


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DomainError(f"{folder} is not a folder of images")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def folder_domain(folder: str | Path, resolution: int, *, description: str, n: int | None = None,
                  seed: int = 0, quantile: float = DEFAULT_QUANTILE, bundle: Any = None) -> dict[str, Any]:
    """A domain from a folder of training-domain images (every file cfviewer.imaging loads);
    the files are shuffled with ``seed`` before the cross-fitting folds are dealt."""
    from cfviewer import imaging

    files = image_files(folder)
    rng = np.random.default_rng(seed)
    files = [files[i] for i in rng.permutation(len(files))][: n or None]
    imgs, bad = [], 0
    for f in files:
        try:
            imgs.append(imaging.load(f))
        except CfviewerError:
            bad += 1
    if len(imgs) < MIN_REFERENCE:
        raise DomainError(f"{folder}: {len(imgs)} loadable images ({bad} not loadable); a domain reference "
                          f"needs at least {MIN_REFERENCE}")
    return build_domain(model_space(imgs, resolution, bundle), description=description, source="images",
                        resolution=resolution, augment=None, seed=seed, quantile=quantile,
                        extra={"reference": {"what": f"images in {Path(folder).name}/", "n": len(imgs),
                                             "not_loadable": bad}})


# ------------------------------------------------------------------------ stored domains ---

def get_domain(source: Any) -> dict[str, Any] | None:
    """The stored domain of a Bundle, a meta dict, or a bundle.json document; None when there is
    none. Raises DomainError when it is there but malformed."""
    meta = getattr(source, "meta", source)
    if isinstance(meta, Mapping) and "format" in meta and "meta" in meta:  # a bundle.json document
        meta = meta.get("meta") or {}
    d = (meta or {}).get(META_KEY) if isinstance(meta, Mapping) else None
    if d is None:
        return None
    problem = _check(d)
    if problem:
        raise DomainError(f"the bundle's stored training domain is unusable ({problem}); rebuild it with "
                          "`cfviewer bundle-domain --bundle DIR`")
    return d


def _check(d: Any) -> str | None:
    if not isinstance(d, Mapping):
        return "not an object"
    if d.get("format") != FORMAT or d.get("score") != SCORE:
        return f"format {d.get('format')!r} / score {d.get('score')!r}, this cfviewer reads {FORMAT} / {SCORE}"
    f = len(FEATURES)
    try:
        ok = (len(d["mean"]) == f and len(d["scale"]) == f and np.asarray(d["precision"]).shape == (f, f)
              and math.isfinite(float(d["threshold"])) and int(d["resolution"]) > 0)
    except (KeyError, TypeError, ValueError):
        return "missing or non-numeric mean / scale / precision / threshold / resolution"
    return None if ok else f"expected {f} statistics"


def read_bundle_json(bundle_dir: str | Path) -> dict[str, Any]:
    p = Path(bundle_dir) / "bundle.json"
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise BundleError(f"{p} is missing: {bundle_dir} is not a cfviewer model bundle") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{p} cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != "cfviewer-bundle":
        raise BundleError(f"{p}: not a cfviewer model bundle")
    return doc


def write_domain(bundle_dir: str | Path, domain: Mapping[str, Any] | None) -> Path:
    """Store ``domain`` as meta.domain in bundle_dir/bundle.json (None removes it); nothing else
    in the file, and no weights, change."""
    p = Path(bundle_dir) / "bundle.json"
    doc = read_bundle_json(bundle_dir)
    meta = dict(doc.get("meta") or {})
    if domain is None:
        meta.pop(META_KEY, None)
    else:
        if _check(domain):
            raise DomainError(f"refusing to store a malformed domain ({_check(domain)})")
        meta[META_KEY] = dict(domain)
    doc["meta"] = meta
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    tmp.replace(p)
    return p


# ------------------------------------------------------------------------------- checking ---

def _pct(k: int, n: int) -> str:
    if n == 0:
        return "0 %"
    v = 100.0 * k / n
    if 0 < v < 1:
        return "< 1 %"
    if 99 < v < 100:
        return "> 99 %"
    return f"{round(v):.0f} %"


@dataclass
class DomainCheck:
    """Which of some images lie outside a bundle's training domain.

    ``known`` is False when the bundle stores no domain (then nothing was checked, ``reason``
    says why); ``outside`` holds the keys (or indices) of the images outside."""

    what: str
    n: int
    known: bool
    description: str = ""
    threshold: float | None = None
    outside: list[Any] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    reason: str = ""

    @property
    def n_outside(self) -> int:
        return len(self.outside)

    @property
    def share(self) -> float:
        return self.n_outside / self.n if self.n else 0.0

    @property
    def warning(self) -> bool:
        return self.known and self.n_outside > 0

    @property
    def message(self) -> str:
        if not self.known:
            return (f"the bundle's training domain is unknown ({self.reason}): the {self.n} {self.what} were not "
                    "checked against it")
        where = f"the bundle's training domain ({self.description})"
        if not self.n_outside:
            return f"all {self.n} {self.what} are inside {where}"
        if self.n == 1 and not self.what.endswith("s") and " in " not in self.what:
            return (f"the {self.what} is outside {where}: the model's predictions (and explanations) on it "
                    "are unreliable")
        return (f"{self.n_outside} of {self.n} {self.what} ({_pct(self.n_outside, self.n)}) are outside {where}: "
                "its predictions on them are unreliable")

    def line(self) -> str:
        """The message prefixed 'warning:' (some images outside) or 'note:'."""
        return f"{'warning' if self.warning else 'note'}: {self.message}"

    def among(self, keys: Iterable[Any]) -> int:
        """How many of ``keys`` are outside."""
        out = set(self.outside)
        return sum(1 for k in keys if k in out)

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "n": self.n, "known": self.known, "description": self.description,
                "threshold": self.threshold, "n_outside": self.n_outside, "share": self.share,
                "outside": list(self.outside), "message": self.message}


NO_DOMAIN = "bundle.json stores no reference distribution; add one with `cfviewer bundle-domain --bundle DIR`"


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for it in items:
        chunk.append(it)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_images(source: Any, images: Iterable[np.ndarray], *, what: str = "images",
                 keys: Sequence[Any] | None = None, bundle: Any = None) -> DomainCheck:
    """Check H x W images (any sizes; an iterable is read in batches) against the domain of
    ``source`` (a Bundle, a meta dict or a bundle.json document). ``keys`` name the images in
    ``outside`` (default: their indices). ``bundle`` (default ``source`` when it is a Bundle)
    supplies the model input transform."""
    domain = get_domain(source)
    if bundle is None and hasattr(source, "meta") and hasattr(source, "resolution"):
        bundle = source
    if domain is None:
        n = len(keys) if keys is not None else sum(1 for _ in images)
        return DomainCheck(what, n, False, reason=NO_DOMAIN)
    res = int(domain["resolution"])
    if bundle is not None and int(getattr(bundle, "resolution", res)) != res:
        raise DomainError(f"the stored domain is for {res} px inputs but the bundle's are "
                          f"{bundle.resolution} px; rebuild it with `cfviewer bundle-domain`")
    dist: list[float] = []
    for chunk in _batches(images, BATCH):
        dist.extend(distances(domain, model_space(chunk, res, bundle)).tolist())
    names = list(keys) if keys is not None else list(range(len(dist)))
    if len(names) != len(dist):
        raise DomainError(f"check_images: {len(names)} keys for {len(dist)} images")
    thr = float(domain["threshold"])
    return DomainCheck(what, len(dist), True, str(domain.get("description", "")), thr,
                       [k for k, d in zip(names, dist) if d > thr], [float(d) for d in dist])


def check_files(bundle_dir: str | Path | None, paths: Sequence[str | Path], *, what: str = "images",
                keys: Sequence[Any] | None = None,
                load: Callable[[Path], np.ndarray] | None = None) -> DomainCheck | None:
    """Check image files against the domain stored in ``bundle_dir``'s bundle.json (no weights
    are loaded). None when there is no bundle directory to check against."""
    if bundle_dir is None:
        return None
    from cfviewer import imaging

    doc = read_bundle_json(bundle_dir)
    loader = load or imaging.load
    return check_images(doc, (loader(Path(p)) for p in paths), what=what,
                        keys=list(keys) if keys is not None else list(range(len(paths))))


def safe_check(fn: Callable[[], DomainCheck | None], what: str, n: int) -> DomainCheck | None:
    """Run a check; a failure of the check itself never stops an import or a sampling: it is
    reported as an unknown domain with the reason."""
    try:
        return fn()
    except CfviewerError as exc:
        return DomainCheck(what, n, False, reason=f"the check failed: {exc}")
    except Exception as exc:  # noqa: BLE001 - an unreadable reference must not lose an import
        return DomainCheck(what, n, False, reason=f"the check failed: {type(exc).__name__}: {exc}")
