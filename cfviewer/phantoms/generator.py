"""generate(): one phantom chest radiograph with labels, masks and confounders;
generate_batch(): many, with per-image seeds derived from numpy's SeedSequence."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

from cfviewer import PATHOLOGIES
from cfviewer.errors import CfviewerError
from cfviewer.phantoms.anatomy import draw_anatomy, sample_patient
from cfviewer.phantoms.confounders import CONFOUNDERS, chest_tube, marker
from cfviewer.phantoms.findings import DRAWERS, Edits, sample_ctr
from cfviewer.phantoms.raster import make_frame

F32 = np.float32
MIN_SIZE, MAX_SIZE = 32, 2048


class PhantomConfigError(CfviewerError, ValueError):
    """A phantom configuration value is out of range."""


@dataclass(frozen=True)
class PhantomConfig:
    """What to generate. Probabilities are per image and independent across pathologies.

    severity_range: findings get a conspicuity drawn uniformly in this range (0 subtle, 1 obvious).
    """

    size: int = 224
    prevalence: Mapping[str, float] = field(default_factory=lambda: {p: 0.3 for p in PATHOLOGIES})
    tube_given_pneumothorax: float = 0.8
    tube_given_no_pneumothorax: float = 0.05
    marker_probability: float = 0.5
    severity_range: tuple[float, float] = (0.0, 1.0)
    noise: bool = True

    def __post_init__(self) -> None:
        check_size(self.size)
        unknown = sorted(set(self.prevalence) - set(PATHOLOGIES))
        if unknown:
            raise PhantomConfigError(
                f"PhantomConfig.prevalence: unknown pathology {unknown[0]!r}; use {', '.join(PATHOLOGIES)}")
        merged = {p: 0.3 for p in PATHOLOGIES}
        merged.update({k: float(v) for k, v in self.prevalence.items()})
        object.__setattr__(self, "prevalence", merged)
        checks = [(f"prevalence[{k!r}]", v) for k, v in merged.items()] + [
            ("tube_given_pneumothorax", self.tube_given_pneumothorax),
            ("tube_given_no_pneumothorax", self.tube_given_no_pneumothorax),
            ("marker_probability", self.marker_probability),
        ]
        for name, v in checks:
            if not 0.0 <= float(v) <= 1.0:
                raise PhantomConfigError(f"PhantomConfig.{name} = {v}: a probability must be in [0, 1]")
        lo, hi = self.severity_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise PhantomConfigError(
                f"PhantomConfig.severity_range = {self.severity_range}: need 0 <= low <= high <= 1")


def check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise PhantomConfigError(f"phantom size {size!r}: use an integer between {MIN_SIZE} and {MAX_SIZE} pixels")
    return int(size)


@dataclass
class Phantom:
    image: np.ndarray                 # float32 HxW in [-1024, 1024], bright = dense
    labels: dict[str, int]            # pathology -> 0/1
    masks: dict[str, np.ndarray]      # finding/confounder name -> bool HxW (only those present)
    confounders: dict[str, bool]      # chest_tube, marker
    seed: int
    meta: dict

    @property
    def label_vector(self) -> np.ndarray:
        return np.array([self.labels[p] for p in PATHOLOGIES], dtype=np.int64)


@dataclass
class PhantomBatch:
    images: np.ndarray                # N x H x W float32
    labels: np.ndarray                # N x 6 int64 (order of cfviewer.PATHOLOGIES)
    confounders: np.ndarray           # N x 2 bool (order of CONFOUNDERS)
    ctr: np.ndarray                   # N float
    seeds: np.ndarray                 # N uint64: generate(seeds[i]) reproduces image i
    masks: dict[str, np.ndarray] | None  # name -> N x H x W bool (all False where absent)
    pathologies: tuple[str, ...] = PATHOLOGIES

    def __len__(self) -> int:
        return len(self.images)


def image_seeds(n: int, seed: int) -> np.ndarray:
    """Per-image seeds of a dataset: the first n words of SeedSequence(seed) (prefix-stable)."""
    return np.random.SeedSequence(int(seed)).generate_state(int(n), dtype=np.uint64)


def _resolve_labels(labels: Mapping[str, int] | None) -> dict[str, int]:
    if labels is None:
        return {}
    out = {}
    for k, v in labels.items():
        if k not in PATHOLOGIES:
            raise PhantomConfigError(f"labels: unknown pathology {k!r}; use {', '.join(PATHOLOGIES)}")
        out[k] = int(bool(v))
    return out


def generate(seed: int, size: int | None = None, config: PhantomConfig | None = None,
             labels: Mapping[str, int] | None = None) -> Phantom:
    """One phantom. Same (seed, size, config, labels) -> bit-identical output.

    `labels` forces findings on (1) or off (0); pathologies not given are drawn from
    `config.prevalence`. Geometry of each finding depends only on the seed, so forcing one label
    does not move the others.
    """
    config = config or PhantomConfig()
    size = check_size(config.size if size is None else size)
    forced = _resolve_labels(labels)
    seed = int(seed)
    rng = np.random.default_rng(seed)
    u_labels = rng.random(len(PATHOLOGIES))
    lab = {p: int(forced.get(p, u_labels[i] < config.prevalence[p])) for i, p in enumerate(PATHOLOGIES)}
    lo, hi = config.severity_range
    sev = {p: float(lo + (hi - lo) * v) for p, v in zip(PATHOLOGIES, rng.random(len(PATHOLOGIES)))}
    sub = rng.integers(0, 2**63 - 1, size=len(PATHOLOGIES) + 4)
    u_tube, u_marker = rng.random(2)

    ctr = sample_ctr(np.random.default_rng(sub[1]), bool(lab["Cardiomegaly"]), sev["Cardiomegaly"])
    prng = np.random.default_rng(sub[-1])
    patient = sample_patient(prng, ctr)
    frame = make_frame(size, prng.uniform(-0.04, 0.04), prng.uniform(0.02, 0.1),
                       prng.uniform(1.02, 1.14), prng.uniform(-0.05, 0.05))
    anat = draw_anatomy(frame, patient)

    edits = Edits.empty(size)
    for i, p in enumerate(PATHOLOGIES):
        if lab[p] and p in DRAWERS:
            DRAWERS[p](frame, patient, anat, edits, np.random.default_rng(sub[i]), sev[p])
    masks = dict(edits.masks)
    if lab["Cardiomegaly"]:
        masks["Cardiomegaly"] = anat.heart.copy()

    lung = anat.lung[-1] + anat.lung[1]
    A = anat.base - anat.air * edits.air_scale + anat.vessels * lung * edits.vessel_keep + edits.dens

    conf = {"chest_tube": False, "marker": False}
    conf_meta: dict = {}
    p_tube = config.tube_given_pneumothorax if lab["Pneumothorax"] else config.tube_given_no_pneumothorax
    if u_tube < p_tube:
        trng = np.random.default_rng(sub[-2])
        side = edits.meta["Pneumothorax"]["side"] if lab["Pneumothorax"] else int(trng.choice((-1, 1)))
        att, tmask, conf_meta["chest_tube"] = chest_tube(frame, patient, side, trng)
        A = A + att
        masks["chest_tube"] = tmask
        conf["chest_tube"] = True

    erng = np.random.default_rng(sub[-3])
    # Detector characteristic curve: a display value roughly linear in attenuation (as in a log
    # image) with soft toe and shoulder, so a rib has the same contrast over lung and over air.
    mu = erng.uniform(1.2, 1.6)
    mid = F32(erng.uniform(0.6, 0.8))
    lo_v = np.tanh(F32(mu) * (F32(0.0) - mid))
    hi_v = np.tanh(F32(mu) * (F32(1.6) - mid))
    img = (np.tanh(F32(mu) * (np.maximum(A, 0.0) - mid)) - lo_v) * F32(1.0 / (hi_v - lo_v))
    blur = erng.uniform(0.35, 0.9) * size / 224
    img = gaussian_filter(img, blur)
    noise_sd = erng.uniform(0.005, 0.02)
    if config.noise:
        nz = erng.standard_normal((size, size)).astype(F32)
        img = img + F32(noise_sd) * np.sqrt(img + F32(0.05)) * nz
    if u_marker < config.marker_probability:
        mimg, mmask, conf_meta["marker"] = marker(size, np.random.default_rng(sub[-4]))
        img = np.maximum(img, F32(0.97) * mimg)
        masks["marker"] = mmask
        conf["marker"] = True
    image = np.clip(img * F32(2048.0) - F32(1024.0), -1024.0, 1024.0).astype(F32)

    meta = {
        "ctr": ctr,
        "severity": {p: sev[p] for p in PATHOLOGIES if lab[p]},
        "findings": edits.meta,
        "confounders": conf_meta,
        "patient": {"W": patient.W, "dome_right": patient.dome_right, "dome_left": patient.dome_left,
                    "apex": patient.apex, "heart_axes": tuple(float(v) for v in patient.heart_axes)},
        "frame": {"tx": frame.tx, "ty": frame.ty, "scale": frame.scale, "angle": frame.angle},
        "exposure": {"mu": mu, "blur_px": blur, "noise_sd": noise_sd if config.noise else 0.0},
        "lung_mask": lung > 0.5,
        "body_mask": anat.body,
    }
    return Phantom(image=image, labels=lab, masks=masks, confounders=conf, seed=seed, meta=meta)


def _one(args: tuple[int, int, PhantomConfig]) -> Phantom:
    seed, size, config = args
    return generate(seed, size, config)


def iter_phantoms(n: int, seed: int, size: int | None = None, config: PhantomConfig | None = None,
                  n_jobs: int = 1) -> Iterator[Phantom]:
    """Phantoms 0..n-1 of the dataset (seed), in order; n_jobs > 1 uses a process pool
    (same output, per-image seeds are fixed up front)."""
    config = config or PhantomConfig()
    size = check_size(config.size if size is None else size)
    if int(n) < 0:
        raise PhantomConfigError(f"number of phantoms {n}: must be >= 0")
    seeds = image_seeds(n, seed)
    jobs = [(int(s), size, config) for s in seeds]
    if n_jobs and n_jobs > 1 and n > 1:
        import multiprocessing as mp

        with mp.get_context("spawn" if mp.get_start_method(allow_none=True) == "spawn" else "fork").Pool(n_jobs) as pool:
            yield from pool.imap(_one, jobs, chunksize=8)
    else:
        for j in jobs:
            yield _one(j)


def generate_batch(n: int, seed: int, size: int | None = None, config: PhantomConfig | None = None,
                   masks: bool = True, n_jobs: int = 1) -> PhantomBatch:
    """n phantoms as arrays. Image i equals generate(image_seeds(n, seed)[i], size, config).

    masks=False skips the N x H x W mask arrays (use it for large training sets).
    """
    config = config or PhantomConfig()
    size = check_size(config.size if size is None else size)
    n = int(n)
    images = np.empty((n, size, size), F32)
    labels = np.zeros((n, len(PATHOLOGIES)), np.int64)
    conf = np.zeros((n, len(CONFOUNDERS)), bool)
    ctr = np.zeros(n, np.float64)
    mk = {k: np.zeros((n, size, size), bool) for k in (*PATHOLOGIES, *CONFOUNDERS)} if masks else None
    for i, ph in enumerate(iter_phantoms(n, seed, size, config, n_jobs=n_jobs)):
        images[i] = ph.image
        labels[i] = ph.label_vector
        conf[i] = [ph.confounders[c] for c in CONFOUNDERS]
        ctr[i] = ph.meta["ctr"]
        if mk is not None:
            for k, m in ph.masks.items():
                mk[k][i] = m
    return PhantomBatch(images=images, labels=labels, confounders=conf, ctr=ctr,
                        seeds=image_seeds(n, seed), masks=mk)
