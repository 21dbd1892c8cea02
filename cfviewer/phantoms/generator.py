"""generate(): one phantom chest radiograph with labels, masks and confounders;
generate_batch(): many, with per-image seeds derived from numpy's SeedSequence.

The opt-in realism of PhantomConfig (mimics, label noise, AP and low-inspiration films,
collimation, burned-in text, detailed anatomy, subtle findings; PhantomConfig.clinical() turns
it all on) draws from its own random streams, SeedSequence([seed, 7, k]) per feature, and only
when the feature is on, so a config that does not set those fields gives bit-identical images,
labels and masks to the plain phantom.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy.ndimage import gaussian_filter

from cfviewer import PATHOLOGIES
from cfviewer.errors import CfviewerError
from cfviewer.phantoms.anatomy import AnatomyOptions, draw_anatomy, sample_patient
from cfviewer.phantoms.confounders import CONFOUNDERS, annotation, chest_tube, collimation, marker
from cfviewer.phantoms.findings import (CTR_GRADED, DRAWERS, GRADED_DRAWERS, Edits, atelectasis_plan, graded_ctr,
                                        sample_ctr, tier, volume_loss_elevation)
from cfviewer.phantoms.mimics import DRAW as MIMIC_DRAW, MIMIC_KINDS, mask_name as mimic_mask_name
from cfviewer.phantoms.raster import make_frame

F32 = np.float32
MIN_SIZE, MAX_SIZE = 32, 2048


class PhantomConfigError(CfviewerError, ValueError):
    """A phantom configuration value is out of range."""


# PhantomConfig.clinical(): plain JSON values, so a train config can also spell them out.
CLINICAL_PRESET: dict = {
    "mimic_probability": 0.2,
    "label_noise": 0.03,
    "ap_fraction": 0.3,
    "low_inspiration_probability": 0.15,
    "collimation_probability": 0.3,
    "annotation_probability": 0.3,
    "anatomy_detail": True,
    "subtle_findings": True,
    "volume_loss": True,
}

_PROBABILITY_FIELDS = ("mimic_probability", "ap_fraction", "low_inspiration_probability",
                       "collimation_probability", "annotation_probability")
_FLAG_FIELDS = ("anatomy_detail", "subtle_findings", "volume_loss")
MAX_LABEL_NOISE = 0.5


@dataclass(frozen=True)
class PhantomConfig:
    """What to generate. Probabilities are per image and independent across pathologies.

    severity_range: findings get a conspicuity drawn uniformly in this range (0 subtle, 1 obvious).

    Opt-in realism (all off by default; off = the plain phantom, bit for bit):
    mimic_probability: per image and independently per kind, a mimic of a finding (nipple
        shadow, end-on vessel, skin fold, breast shadow, linear scar, scapular edge; see
        phantoms.mimics). Masks "mimic_<kind>"; they never set a label.
    label_noise: probability that each pathology's label is flipped (labels only; the image and
        masks show what was drawn; meta["true_labels"], meta["label_flipped"]). Labels forced
        through generate(labels=...) are never flipped. At most 0.5.
    ap_fraction: share of AP (supine/portable) films: magnified heart (apparent CTR + 0.04-0.08;
        the Cardiomegaly label follows the PA-equivalent meta["ctr_true"]), scapulae over the
        lateral upper lungs (mask "mimic_scapula"), higher clavicles, more rotation, higher
        domes, noisier and flatter exposure, supine effusions that may layer as a veil.
    low_inspiration_probability: domes 0.07-0.12 higher (about one rib fewer), heart looking
        wider (apparent CTR + 0.02-0.04), crowded basal vessels, denser bases.
    collimation_probability: collimation edges on 1-4 sides (black shutter or blank), mask
        "collimation".
    annotation_probability: burned-in text in a corner ("AP", "PORTABLE", ...), mask "annotation".
    anatomy_detail: two-lobe heart with aortic knob, dense hilar arteries, abdomen (liver,
        gastric air-fluid level, colonic gas) and breast shadows in 35% of patients (also masked
        "mimic_breast": they mimic basal opacity).
    subtle_findings: findings graded subtle / moderate / obvious by thirds of the severity (the
        subtle third is genuinely subtle: see phantoms.findings) and a continuous CTR
        (normals 0.38-0.50, subtle cardiomegaly 0.505-0.54).
    volume_loss (with subtle_findings): moderate and obvious plate atelectasis and lower-lobe
        collapse raise the hemidiaphragm on their side (plates 1.4-2.6 cm, lower lobe 1.8-3.4 cm), the
        sign of lost volume a radiologist looks for; the Atelectasis mask includes the band the
        dome moved through. Subtle plates stay a thin line alone.
    """

    size: int = 224
    prevalence: Mapping[str, float] = field(default_factory=lambda: {p: 0.3 for p in PATHOLOGIES})
    tube_given_pneumothorax: float = 0.8
    tube_given_no_pneumothorax: float = 0.05
    marker_probability: float = 0.5
    severity_range: tuple[float, float] = (0.0, 1.0)
    noise: bool = True
    mimic_probability: float = 0.0
    label_noise: float = 0.0
    ap_fraction: float = 0.0
    low_inspiration_probability: float = 0.0
    collimation_probability: float = 0.0
    annotation_probability: float = 0.0
    anatomy_detail: bool = False
    subtle_findings: bool = False
    volume_loss: bool = False

    @classmethod
    def clinical(cls, **overrides) -> PhantomConfig:
        """Everything on, at rates chosen to resemble a hospital chest-film archive:

        - mimic_probability 0.2 per kind: nipple shadows, skin folds, breast shadows, scars and
          end-on vessels are each seen on a good fraction of real films; with six kinds about
          three films in four carry at least one thing a naive reader could call.
        - label_noise 0.03: report-mined labels are wrong for a few percent of images per
          finding; 3% symmetric caps a perfect reader's AUC near 0.95 instead of 1.
        - ap_fraction 0.3: public archives are 30-60% portable AP films (inpatients); 0.3 keeps
          PA the majority while making the AP magnification of the heart a real confounder
          for Cardiomegaly.
        - low_inspiration_probability 0.15: poor inspiration is common on sick or obese
          patients and makes bases look opaque and hearts look big.
        - collimation_probability 0.3, annotation_probability 0.3: common acquisition marks that
          a model must learn to ignore (the text follows the projection, like real films).
        - anatomy_detail, subtle_findings: on (a shaped heart, hila, abdomen, breasts; a third
          of the findings subtle, so no pathology is trivially separable).
        - volume_loss: on (atelectasis beyond the subtle tier shows the raised hemidiaphragm of
          lost volume, as real collapse does).
        """
        return cls(**{**CLINICAL_PRESET, **overrides})

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
        for name in _PROBABILITY_FIELDS + ("label_noise",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise PhantomConfigError(f"PhantomConfig.{name} = {v!r}: must be a number")
            object.__setattr__(self, name, float(v))
        for name in _PROBABILITY_FIELDS:
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise PhantomConfigError(f"PhantomConfig.{name} = {v}: a probability must be in [0, 1]")
        if not 0.0 <= self.label_noise <= MAX_LABEL_NOISE:
            raise PhantomConfigError(
                f"PhantomConfig.label_noise = {self.label_noise}: a flip probability must be in "
                f"[0, {MAX_LABEL_NOISE}] (above 0.5 the labels would mostly be inverted)")
        for name in _FLAG_FIELDS:
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                raise PhantomConfigError(f"PhantomConfig.{name} = {v!r}: must be true or false")
            object.__setattr__(self, name, bool(v))

    @property
    def realism(self) -> bool:
        """Whether any opt-in realism feature is on."""
        return bool(self.anatomy_detail or self.subtle_findings or self.volume_loss or self.label_noise
                    or any(getattr(self, n) for n in _PROBABILITY_FIELDS))


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


# Opt-in features draw from SeedSequence([seed, _STREAM, key]); one key per feature (and per
# mimic kind / pathology) so turning one feature on never moves another's draws.
_STREAM = 7
K_LABEL_NOISE, K_PROJECTION, K_INSPIRATION, K_DETAIL, K_COLLIMATION, K_ANNOTATION, K_CTR, K_BREAST, \
    K_SCAPULA, K_VOLUME_LOSS = range(1, 11)
K_MIMIC, K_GRADED = 20, 40


def _stream(seed: int, key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAM, key]))


def _volume_loss(config: PhantomConfig, seed: int, lab: Mapping[str, int], sev: Mapping[str, float]) -> dict | None:
    """{"side", "elevation"} when this phantom's atelectasis raises its hemidiaphragm: its side
    and kind are read from the drawer's own stream (findings.atelectasis_plan), the elevation
    from the volume-loss stream."""
    if not (config.volume_loss and config.subtle_findings and lab["Atelectasis"]):
        return None
    i = PATHOLOGIES.index("Atelectasis")
    side, t_, kind = atelectasis_plan(_stream(seed, K_GRADED + i), sev["Atelectasis"])
    elevation = volume_loss_elevation(kind, t_, _stream(seed, K_VOLUME_LOSS))
    return {"side": side, "elevation": elevation} if elevation > 0 else None


def _anatomy_options(config: PhantomConfig, seed: int, ap: bool, low: bool,
                     prj: np.random.Generator | None, ins: np.random.Generator | None) -> AnatomyOptions | None:
    if not (config.anatomy_detail or ap or low):
        return None
    kw: dict = {}
    if config.anatomy_detail:
        d = _stream(seed, K_DETAIL)
        knob_r = d.uniform(0.06, 0.075)
        kw.update(
            detail=True,
            heart_lv=d.uniform(0.8, 0.9),
            heart_ra=(d.uniform(0.18, 0.25), d.uniform(0.12, 0.35), d.uniform(0.55, 0.75)),
            knob=(d.uniform(0.09, 0.11), d.uniform(-0.34, -0.29), knob_r, 0.9 * knob_r),
            knob_density=d.uniform(0.02, 0.05),
            hila=(d.uniform(0.1, 0.16), *(float(v) for v in d.uniform(-0.025, 0.025, 6))),
            liver=d.uniform(0.04, 0.08),
            gastric=(d.uniform(0.34, 0.48), d.uniform(0.08, 0.13), d.uniform(0.06, 0.11)),
            fluid_level=not ap,
            colon_gas=tuple((d.uniform(0.5, 0.7), d.uniform(0.15, 0.35), d.uniform(0.025, 0.045))
                            for _ in range(int(d.integers(0, 4)))),
        )
    if ap:
        rot = prj.uniform(-0.035, 0.035)
        kw.update(clavicle_dy=-prj.uniform(0.04, 0.08), clavicle_dx=-0.4 * rot, spine_dx=0.6 * rot)
    if low:
        kw.update(vessel_squash=ins.uniform(0.72, 0.85), basal_density=ins.uniform(0.08, 0.16))
    return AnatomyOptions(**kw)


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

    # --- opt-in acquisition: projection and inspiration (own streams) ------------------------
    prj = ins = None
    ap = low = False
    if config.ap_fraction > 0:
        prj = _stream(seed, K_PROJECTION)
        ap = bool(prj.random() < config.ap_fraction)
    if config.low_inspiration_probability > 0:
        ins = _stream(seed, K_INSPIRATION)
        low = bool(ins.random() < config.low_inspiration_probability)

    if config.subtle_findings:
        ctr_true = graded_ctr(_stream(seed, K_CTR), bool(lab["Cardiomegaly"]), sev["Cardiomegaly"])
    else:
        ctr_true = sample_ctr(np.random.default_rng(sub[1]), bool(lab["Cardiomegaly"]), sev["Cardiomegaly"])
    ctr = ctr_true
    if ap:    # AP: the heart is far from the detector and magnified
        ctr += prj.uniform(0.04, 0.08)
    if low:   # poor inspiration: the heart lies broader in a shorter chest
        ctr += ins.uniform(0.02, 0.04)
    if ap or low:
        ctr = float(min(ctr, 0.76))
    prng = np.random.default_rng(sub[-1])
    patient = sample_patient(prng, ctr)
    tx, ty, scale, angle = (prng.uniform(-0.04, 0.04), prng.uniform(0.02, 0.1),
                            prng.uniform(1.02, 1.14), prng.uniform(-0.05, 0.05))
    if ap or low:
        rise = (ins.uniform(0.07, 0.12) if low else 0.0) + (prj.uniform(0.0, 0.04) if ap else 0.0)
        patient = replace(patient, dome_right=patient.dome_right - rise, dome_left=patient.dome_left - rise)
    if ap:
        angle += prj.uniform(-0.04, 0.04)
    volume_loss = _volume_loss(config, seed, lab, sev)
    if volume_loss:   # the collapsed side's dome rises before the anatomy is drawn
        key = "dome_right" if volume_loss["side"] < 0 else "dome_left"
        patient = replace(patient, **{key: getattr(patient, key) - volume_loss["elevation"]})
    frame = make_frame(size, tx, ty, scale, angle)
    opts = _anatomy_options(config, seed, ap, low, prj, ins)
    anat = draw_anatomy(frame, patient, opts)

    edits = Edits.empty(size)
    ctx = {"projection": "AP" if ap else "PA", "volume_loss": volume_loss}
    for i, p in enumerate(PATHOLOGIES):
        if lab[p] and p in DRAWERS:
            if config.subtle_findings:
                GRADED_DRAWERS[p](frame, patient, anat, edits, _stream(seed, K_GRADED + i), sev[p], ctx)
            else:
                DRAWERS[p](frame, patient, anat, edits, np.random.default_rng(sub[i]), sev[p])
    masks = dict(edits.masks)
    if lab["Cardiomegaly"]:
        masks["Cardiomegaly"] = anat.heart.copy()

    lung = anat.lung[-1] + anat.lung[1]
    A = anat.base - anat.air * edits.air_scale + anat.vessels * lung * edits.vessel_keep + edits.dens

    # --- opt-in mimics (never labels) ----------------------------------------------------------
    mimic_meta: dict = {}
    todo: list[tuple[str, np.random.Generator, dict]] = []
    if config.mimic_probability > 0:
        for j, kind in enumerate(MIMIC_KINDS):
            mr = _stream(seed, K_MIMIC + j)
            if mr.random() < config.mimic_probability:
                todo.append((kind, mr, {}))
    kinds = {k for k, _, _ in todo}
    if ap:   # the scapulae project over the lungs on every AP film
        todo = [t for t in todo if t[0] != "scapula"]
        todo.append(("scapula", _stream(seed, K_SCAPULA), {"sides": (-1, 1), "strength": 1.0}))
    if config.anatomy_detail and "breast" not in kinds:
        br = _stream(seed, K_BREAST)
        if br.random() < 0.35:
            todo.append(("breast", br, {"asymmetric": False}))
    if todo:
        mdens = np.zeros((size, size), F32)
        for kind, mr, kw in todo:
            mmask, meta_k = MIMIC_DRAW[kind](frame, patient, anat, mdens, mr, **kw)
            meta_k["source"] = "projection" if kind == "scapula" and ap else (
                "anatomy" if kw.get("asymmetric") is False else "mimic")
            mimic_meta[kind] = meta_k
            if mmask.any():
                masks[mimic_mask_name(kind)] = mmask
        A = A + mdens

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
    if ap:   # portable, no grid: more scatter, flatter contrast
        mu *= 0.9
    mid = F32(erng.uniform(0.6, 0.8))
    lo_v = np.tanh(F32(mu) * (F32(0.0) - mid))
    hi_v = np.tanh(F32(mu) * (F32(1.6) - mid))
    img = (np.tanh(F32(mu) * (np.maximum(A, 0.0) - mid)) - lo_v) * F32(1.0 / (hi_v - lo_v))
    blur = erng.uniform(0.35, 0.9) * size / 224
    if ap:   # some patient motion
        blur *= 1.2
    img = gaussian_filter(img, blur)
    noise_sd = erng.uniform(0.005, 0.02)
    if ap:   # lower dose
        noise_sd *= 1.5
    if config.noise:
        nz = erng.standard_normal((size, size)).astype(F32)
        img = img + F32(noise_sd) * np.sqrt(img + F32(0.05)) * nz
    if config.collimation_probability > 0:
        crng = _stream(seed, K_COLLIMATION)
        if crng.random() < config.collimation_probability:
            cov, fill, cmask, conf_meta["collimation"] = collimation(size, crng)
            img = img * (F32(1.0) - cov) + fill * cov
            masks["collimation"] = cmask
    if u_marker < config.marker_probability:
        mimg, mmask, conf_meta["marker"] = marker(size, np.random.default_rng(sub[-4]))
        img = np.maximum(img, F32(0.97) * mimg)
        masks["marker"] = mmask
        conf["marker"] = True
    if config.annotation_probability > 0:
        arng = _stream(seed, K_ANNOTATION)
        if arng.random() < config.annotation_probability:
            res = annotation(size, arng, ctx["projection"], avoid=conf_meta.get("marker", {}).get("corner"))
            if res is not None:
                aimg, amask, conf_meta["annotation"] = res
                img = np.maximum(img, aimg)
                masks["annotation"] = amask
    image = np.clip(img * F32(2048.0) - F32(1024.0), -1024.0, 1024.0).astype(F32)

    # --- opt-in label noise: labels only, after everything that follows the true findings ----
    true_labels = dict(lab)
    flipped: list[str] = []
    if config.label_noise > 0:
        u_flip = _stream(seed, K_LABEL_NOISE).random(len(PATHOLOGIES))
        for i, p in enumerate(PATHOLOGIES):
            if u_flip[i] < config.label_noise and p not in forced:
                lab[p] = 1 - lab[p]
                flipped.append(p)

    meta = {
        "ctr": ctr,
        "ctr_true": ctr_true,
        "severity": {p: sev[p] for p in PATHOLOGIES if true_labels[p]},
        "findings": edits.meta,
        "confounders": conf_meta,
        "patient": {"W": patient.W, "dome_right": patient.dome_right, "dome_left": patient.dome_left,
                    "apex": patient.apex, "heart_axes": tuple(float(v) for v in patient.heart_axes)},
        "frame": {"tx": frame.tx, "ty": frame.ty, "scale": frame.scale, "angle": frame.angle},
        "exposure": {"mu": mu, "blur_px": blur, "noise_sd": noise_sd if config.noise else 0.0},
        "lung_mask": lung > 0.5,
        "body_mask": anat.body,
        "projection": ctx["projection"],
        "inspiration": "low" if low else "normal",
        "true_labels": true_labels,
        "label_flipped": flipped,
    }
    if config.realism:
        meta["mimics"] = mimic_meta
        meta["anatomy_options"] = asdict(opts) if opts is not None else None
    if config.subtle_findings:
        tiers = {p: tier(sev[p])[0] for p in PATHOLOGIES if true_labels[p] and p in DRAWERS}
        if true_labels["Cardiomegaly"]:
            tiers["Cardiomegaly"] = 0 if ctr_true < CTR_GRADED[1] else (1 if ctr_true < 0.6 else 2)
        meta["grade"] = {p: ("subtle", "moderate", "obvious")[t] for p, t in tiers.items()}
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
                if k not in mk:   # opt-in masks (mimics, collimation, annotation)
                    mk[k] = np.zeros((n, size, size), bool)
                mk[k][i] = m
    return PhantomBatch(images=images, labels=labels, confounders=conf, ctr=ctr,
                        seeds=image_seeds(n, seed), masks=mk)
