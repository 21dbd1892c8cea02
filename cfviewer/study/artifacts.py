"""Precompute every file the reader pages show, for every cohort case under every arm.

Per (case, arm): the display image (`input/image_png`), then for each of the arm's explainers
(`get_explainer(name, bundle, **params).explain(image, target)`):

    map_npy             the R x R map (float32)
    overlay_png         the map over the image (explain.render.overlay)
    gif                 the counterfactual animation, for methods with frames (Latent Shift)
    counterfactual_png  the image at the search bound, when there is one
    frames_npz          frames, lambdas, frame predictions, when there are frames
    explanation_json    predictions (original / reconstruction / counterfactual), params,
                        timings, evaluations and every file's sha256

Files go to `<study>/artifacts/<case>/<arm>/`; each gets one `artifacts` row (path relative to
the study folder, sha256, params, params_hash, timings). `<study>` is the folder the study is
opened from now (`studies.study_folder`): a copied or moved study writes into itself only.

Resumable: a (case, arm, method) whose rows are done with the same params_hash (= sha256 of the
case file's sha256, the bundle identity, the target, the method, its params and the render
settings) and whose files still have their recorded sha256 is skipped. Safe to run twice at
once: a worker first *claims* the (case, arm, method) through its `explanation_json` row in a
write transaction; a claim held by a live process is left alone (claims of dead processes on
this host, or older than `stale_after` seconds, are taken over). Files are written to a
temporary name and renamed, so a reader never sees half a file.

Finally `artifacts/manifest.json` lists the sha256 of every file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import socket
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from cfviewer.files import sha256_file
from cfviewer.study.cohort import load_case_image
from cfviewer.study.db import Database
from cfviewer.study.errors import StudyError
from cfviewer.study.schema import Arm, Artifact, Case, CohortItem, utcnow

RENDER = {"version": 1,  # gif_size: the tile shows it ~160-220 px tall (cfviewer.ui.components.TILE_HEIGHT)
          "overlay_size": 512, "gif_size": 256, "gif_fps": 8.0, "image_max_side": 1024,
          "cmap": "inferno", "opacity": 0.6, "percentile": 99.0}
"""Render settings; part of every params hash (change them and everything is recomputed)."""

INPUT = "input"
Progress = Callable[[int, int, str], None]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _atomic_write(path: Path, writer: Callable[[Path], Any]) -> str:
    """Write via a temporary file in the same folder, rename, return the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp{path.suffix}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return sha256_file(path)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _claim_is_live(claimed_by: str | None, claimed_at: dt.datetime | None, stale_after: float) -> bool:
    if not claimed_by or claimed_at is None:
        return False
    if (utcnow() - claimed_at).total_seconds() > stale_after:
        return False
    host, _, rest = claimed_by.partition(":")
    pid = rest.split(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


@dataclass
class PrecomputeReport:
    units: int = 0  # (case, arm) pairs
    computed: int = 0  # (case, arm, method) explanations computed by this run
    skipped: int = 0  # already up to date
    busy: int = 0  # being computed by another process right now
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    manifest: Path | None = None
    ae_flips: list[str] = field(default_factory=list)
    """Case keys whose Latent Shift explanation (computed now or up to date) is flagged: the
    autoencoder's reconstruction alone is on the other side of the threshold (appendix K)."""

    def __str__(self) -> str:
        s = (f"{self.units} case x arm: computed {self.computed} explanations, {self.skipped} up to date, "
             f"{self.busy} left to another running precompute, {len(self.failed)} failed, "
             f"{self.seconds:.1f} s")
        if self.ae_flips:
            s += (f"\nthe autoencoder alone flips the decision for {len(self.ae_flips)} case(s) (their Latent "
                  f"Shift frames start from the other side of the threshold): {', '.join(self.ae_flips)}")
        if self.failed:
            s += "\n" + "\n".join(f"  failed: {f}" for f in self.failed)
        return s


def _note_ae_flip(rep: PrecomputeReport, case_key: str, summary: dict[str, Any] | None) -> None:
    """Add the case to ``rep.ae_flips`` when the explanation summary is flagged."""
    from cfviewer.explain.latentshift import explanation_flips_decision

    if summary and explanation_flips_decision(summary) and case_key not in rep.ae_flips:
        rep.ae_flips.append(case_key)


def _stored_summary(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()).get("explanation")
    except (OSError, ValueError, AttributeError):
        return None


def _retry(fn, attempts: int = 8):
    for i in range(attempts):
        try:
            return fn()
        except (IntegrityError, OperationalError):
            if i == attempts - 1:
                raise
            time.sleep(0.05 * (i + 1))


def _case_dir(case: Case, arm: Arm) -> Path:
    return Path("artifacts") / f"{case.id:05d}_{_slug(case.case_key)}" / _slug(arm.name)


def _up_to_date(root: Path, rows: list[Artifact], params_hash: str, want_kinds: set[str] | None) -> bool:
    if not rows or any(r.status != "done" or r.params_hash != params_hash for r in rows):
        return False
    if want_kinds is not None and not want_kinds <= {r.kind for r in rows}:
        return False
    for r in rows:
        p = root / (r.path or "")
        if not r.path or not p.is_file() or sha256_file(p) != r.sha256:
            return False
    return True


def _claim(db: Database, root: Path, study_id: int, case_id: int, arm_id: int, jobs: dict[str, str],
           me: str, stale_after: float, force: bool) -> dict[str, str]:
    """For each method {method: params_hash}: 'skip' (up to date), 'busy' (another live worker
    holds it) or 'claimed' (ours now). One write transaction per (case, arm)."""

    def attempt() -> dict[str, str]:
        with db.write() as s:
            rows: dict[str, list[Artifact]] = {}
            for r in s.scalars(select(Artifact).where(Artifact.case_id == case_id, Artifact.arm_id == arm_id)
                               .with_for_update()):
                rows.setdefault(r.method, []).append(r)
            states = {}
            for method, params_hash in jobs.items():
                mine = rows.get(method, [])
                key = next((r for r in mine if r.kind == "explanation_json"), None)
                if not force and key is not None and key.status == "done" and _up_to_date(root, mine, params_hash, None):
                    states[method] = "skip"
                    continue
                if key is not None and key.status == "claimed" and key.claimed_by != me and \
                        _claim_is_live(key.claimed_by, key.claimed_at, stale_after):
                    states[method] = "busy"
                    continue
                if key is None:
                    key = Artifact(study_id=study_id, case_id=case_id, arm_id=arm_id, method=method,
                                   kind="explanation_json", params_hash=params_hash)
                    s.add(key)
                key.status, key.claimed_by, key.claimed_at, key.params_hash = "claimed", me, utcnow(), params_hash
                states[method] = "claimed"
            return states

    return _retry(attempt)


@dataclass
class _Done:
    params: dict[str, Any]
    params_hash: str
    timings: dict[str, Any]
    files: dict[str, tuple[str, str]]  # kind -> (relative path, sha256)


def _store(db: Database, study_id: int, case_id: int, arm_id: int, me: str, done: dict[str, _Done]) -> int:
    """Record the files of each computed method if our claim still stands (drop kinds a method no
    longer produces). Returns how many methods were stored. One write transaction."""

    def attempt() -> int:
        stored = 0
        with db.write() as s:
            by_method: dict[str, dict[str, Artifact]] = {}
            for r in s.scalars(select(Artifact).where(Artifact.case_id == case_id, Artifact.arm_id == arm_id)
                               .with_for_update()):
                by_method.setdefault(r.method, {})[r.kind] = r
            now = utcnow()
            for method, d in done.items():
                rows = by_method.get(method, {})
                key = rows.get("explanation_json")
                if key is not None and key.claimed_by != me and key.status == "claimed":
                    continue  # someone took over a claim we held too long; theirs wins
                for kind, (rel, digest) in d.files.items():
                    r = rows.get(kind)
                    if r is None:
                        r = Artifact(study_id=study_id, case_id=case_id, arm_id=arm_id, method=method, kind=kind,
                                     params_hash=d.params_hash)
                        s.add(r)
                    r.path, r.sha256, r.params, r.params_hash, r.timings = rel, digest, d.params, d.params_hash, d.timings
                    r.status, r.claimed_by, r.claimed_at, r.created_at = "done", None, None, now
                for kind, r in rows.items():
                    if kind not in d.files:
                        s.delete(r)
                stored += 1
        return stored

    return _retry(attempt)


def _write_method(root: Path, rel_dir: Path, method: str, e: Any, image_window) -> dict[str, tuple[str, str]]:
    from cfviewer.explain import render

    base = root / rel_dir
    out: dict[str, tuple[str, str]] = {}

    def put(kind: str, name: str, writer: Callable[[Path], Any]) -> None:
        digest = _atomic_write(base / name, writer)
        out[kind] = (str(rel_dir / name), digest)

    m = _slug(method)
    put("map_npy", f"{m}_map.npy", lambda p: np.save(p, np.asarray(e.map, np.float32)))
    ov = render.overlay(e.image, e.map, cmap=RENDER["cmap"], opacity=RENDER["opacity"],
                        percentile=RENDER["percentile"], size=RENDER["overlay_size"])
    put("overlay_png", f"{m}_overlay.png", lambda p: _save_png(ov, p))
    if e.frames is not None and len(e.frames):
        put("gif", f"{m}.gif", lambda p: render.write_gif(e, p, size=RENDER["gif_size"], fps=RENDER["gif_fps"]))
        put("frames_npz", f"{m}_frames.npz", lambda p: _save_frames(p, e))
    if e.counterfactual is not None:
        cf = render.to_grey(e.counterfactual, render.display_window(e.image))
        put("counterfactual_png", f"{m}_counterfactual.png", lambda p: _save_png(cf, p))
    return out


def _save_png(pixels: np.ndarray, path: Path) -> None:
    """PNG at zlib level 3 (render.save_png's optimize=True is ~20x slower for the same pixels)."""
    from PIL import Image

    Image.fromarray(np.asarray(pixels)).save(path, format="PNG", compress_level=3)


def _save_frames(path: Path, e: Any) -> None:
    with open(path, "wb") as f:
        np.savez_compressed(f, frames=np.asarray(e.frames, np.float32),
                            lambdas=np.asarray(e.lambdas, np.float32),
                            frame_preds=np.asarray(e.frame_preds, np.float32))


def _write_input(root: Path, rel_dir: Path, pixels: np.ndarray) -> dict[str, tuple[str, str]]:
    from cfviewer import imaging
    from cfviewer.explain import render

    h, w = pixels.shape
    side = RENDER["image_max_side"]
    if max(h, w) > side:
        scale = side / max(h, w)
        pixels = imaging.resize_to(pixels, (max(1, round(h * scale)), max(1, round(w * scale))))
    grey = render.to_grey(pixels, render.display_window(pixels))
    digest = _atomic_write(root / rel_dir / "image.png", lambda p: _save_png(grey, p))
    return {"image_png": (str(rel_dir / "image.png"), digest)}


def precompute(
    db: Database,
    study_name: str,
    *,
    bundle: Any = None,
    bundle_id: str | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    force: bool = False,
    stale_after: float = 3600.0,
    limit: int | None = None,
) -> PrecomputeReport:
    """Compute and store every artifact of the study (see the module docstring).

    `bundle`: a loaded Bundle (default: `Bundle.load(study.config["bundle"], device)`);
    `bundle_id` must match the cohort's (the predictions readers see came from that model)."""
    from cfviewer.explain import get_explainer
    from cfviewer.models.bundle import bundle_identity
    from cfviewer.study.studies import get_study, study_folder

    t0 = time.perf_counter()
    me = worker_id()
    with db.read() as s:
        study = get_study(s, study_name)
        root = study_folder(study)  # where the study is now (a copy writes into itself)
        arms = list(study.arms)
        items = list(s.execute(select(CohortItem, Case).join(Case, Case.id == CohortItem.case_id)
                               .where(CohortItem.study_id == study.id).order_by(CohortItem.position)))
        study_id, cfg = study.id, dict(study.config)
    if not items:
        raise StudyError(f"study {study_name!r} has no cohort; run `cfviewer study sample` first")
    if not arms:
        raise StudyError(f"study {study_name!r} has no arms; add them with `cfviewer study create --arm`")
    if bundle is None:
        from cfviewer.models import Bundle

        bdir = cfg.get("bundle")
        if not bdir:
            raise StudyError(f"study {study_name!r} names no model bundle; set one with "
                             "`cfviewer study create --bundle DIR` or pass --bundle")
        bpath = Path(bdir) if Path(bdir).is_absolute() else root / bdir
        bundle = Bundle.load(bpath, device=device)
        bundle_id = bundle_id or bundle_identity(bpath)
    bundle_id = bundle_id or bundle_identity(None, bundle)
    cohort_bundles = {it.bundle for it, _ in items}
    if cohort_bundles != {bundle_id}:
        raise StudyError(f"the cohort was sampled with {sorted(cohort_bundles)} but precompute got {bundle_id!r}; "
                         "use the same model bundle (or sample again with this one)")
    explainers: dict[tuple[int, str], Any] = {}
    for arm in arms:
        for m in arm.methods:
            explainers[(arm.id, m["name"])] = get_explainer(m["name"], bundle, **m.get("params", {}))
    units = [(it, case, arm) for it, case in items for arm in arms]
    if limit is not None:
        units = units[:limit]
    with warnings.catch_warnings():
        # captum warns on every guided-backprop call that it hooks ReLUs (expected, harmless)
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)
        rep = _run_units(db, study, study_id, study_name, root, units, explainers, bundle_id, me,
                         stale_after, force, progress, bundle=bundle)
    rep.manifest = write_manifest(db, study_name)
    rep.seconds = time.perf_counter() - t0
    return rep


def _run_units(db, study, study_id, study_name, root, units, explainers, bundle_id, me, stale_after, force,
               progress, *, bundle) -> PrecomputeReport:
    rep = PrecomputeReport(units=len(units))
    # The one model input (Bundle.model_input): its name is in every params hash, and the
    # field of view it crops is recorded with the display image for the reader pages.
    model_input, fov_of = bundle.input_spec(), bundle.field_of_view
    for k, (it, case, arm) in enumerate(units):
        rel_dir = _case_dir(case, arm)
        label = f"{case.case_key} / {arm.name}"
        try:
            params_of = {INPUT: {"render": RENDER}, **{m["name"]: m.get("params", {}) for m in arm.methods}}
            hashes = {method: _hash({"case": case.sha256, "bundle": bundle_id, "target": it.pathology,
                                     "method": method, "params": params, "render": RENDER,
                                     "model_input": model_input})
                      for method, params in params_of.items()}
            states = _claim(db, root, study_id, case.id, arm.id, hashes, me, stale_after, force)
            rep.skipped += sum(v == "skip" for v in states.values())
            rep.busy += sum(v == "busy" for v in states.values())
            for method in (m for m, v in states.items() if v == "skip" and m != INPUT):
                _note_ae_flip(rep, case.case_key, _stored_summary(root / rel_dir / f"{_slug(method)}.json"))
            todo = [m for m, v in states.items() if v == "claimed"]
            done: dict[str, _Done] = {}
            pixels = load_case_image(study, case) if todo else None
            for method in todo:
                t1 = time.perf_counter()
                if method == INPUT:
                    files = _write_input(root, rel_dir, pixels)
                    summary: dict[str, Any] = {"case": case.case_key, "source_sha256": case.sha256,
                                               "shape": list(pixels.shape), "model_input": model_input,
                                               "field_of_view": list(fov_of(pixels.shape))}
                    timings = {"total": time.perf_counter() - t1}
                else:
                    e = explainers[(arm.id, method)].explain(pixels, it.pathology)
                    t2 = time.perf_counter()
                    files = _write_method(root, rel_dir, method, e, None)
                    summary = e.summary()
                    _note_ae_flip(rep, case.case_key, summary)
                    timings = {**summary.get("timings", {}), "render": time.perf_counter() - t2}
                doc = {"study": study_name, "case": case.case_key, "arm": arm.name, "method": method,
                       "target": it.pathology, "stratum": it.stratum, "bundle": bundle_id,
                       "pred_cohort": it.probability, "explanation": summary, "render": RENDER,
                       "files": {kind: {"path": p, "sha256": d} for kind, (p, d) in files.items()}}
                jname = f"{_slug(method)}.json"
                digest = _atomic_write(root / rel_dir / jname,
                                       lambda p: p.write_text(json.dumps(doc, indent=2, default=str)))
                files["explanation_json"] = (str(rel_dir / jname), digest)
                done[method] = _Done(params_of[method], hashes[method], timings, files)
            if done:
                stored = _store(db, study_id, case.id, arm.id, me, done)
                rep.computed += stored
                rep.busy += len(done) - stored
        except StudyError as exc:
            rep.failed.append(f"{label}: {exc}")
            _release(db, case.id, arm.id, me)
        except Exception as exc:
            rep.failed.append(f"{label}: {type(exc).__name__}: {exc}")
            _release(db, case.id, arm.id, me)
        if progress:
            progress(k + 1, len(units), label)
    return rep


def _release(db: Database, case_id: int, arm_id: int, me: str) -> None:
    def attempt() -> None:
        with db.write() as s:
            for r in s.scalars(select(Artifact).where(Artifact.case_id == case_id, Artifact.arm_id == arm_id,
                                                       Artifact.claimed_by == me, Artifact.status == "claimed")):
                s.delete(r)

    _retry(attempt)


def write_manifest(db: Database, study_name: str) -> Path:
    """`<study folder>/artifacts/manifest.json`: every done artifact's path (relative to the
    study folder) and sha256 (sorted)."""
    from cfviewer.study.studies import get_study, study_folder

    with db.read() as s:
        study = get_study(s, study_name)
        rows = s.execute(select(Artifact.path, Artifact.sha256, Artifact.kind, Artifact.method)
                         .where(Artifact.study_id == study.id, Artifact.status == "done")
                         .order_by(Artifact.path)).all()
        root = study_folder(study)
    doc = {"study": study_name, "written_at": utcnow().isoformat(), "algorithm": "sha256",
           "files": {p: d for p, d, _, _ in rows}}
    path = root / "artifacts" / "manifest.json"
    _atomic_write(path, lambda p: p.write_text(json.dumps(doc, indent=2) + "\n"))
    return path


@dataclass
class ArtifactStatus:
    expected_units: int
    complete_units: int
    files: int
    problems: list[str]


def artifact_status(db: Database, study_name: str, verify: bool = True) -> ArtifactStatus:
    """How many (case, arm) are fully precomputed; with `verify`, re-hash every file."""
    from cfviewer.study.studies import get_study, study_folder

    with db.read() as s:
        study = get_study(s, study_name)
        root = study_folder(study)
        arms = list(study.arms)
        cases = list(s.scalars(select(CohortItem.case_id).where(CohortItem.study_id == study.id)))
        rows = list(s.scalars(select(Artifact).where(Artifact.study_id == study.id, Artifact.status == "done")))
    have: dict[tuple[int, int], set[str]] = {}
    problems = []
    for r in rows:
        have.setdefault((r.case_id, r.arm_id), set()).add(r.method)
        if verify:
            p = root / (r.path or "")
            if not p.is_file():
                problems.append(f"missing file {r.path}")
            elif sha256_file(p) != r.sha256:
                problems.append(f"changed file {r.path} (sha256 differs; run precompute again)")
    complete = sum(1 for c in cases for a in arms
                   if {INPUT, *a.method_names} <= have.get((c, a.id), set()))
    return ArtifactStatus(len(cases) * len(arms), complete, len(rows), problems)
