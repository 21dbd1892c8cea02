"""The explainer sandbox (researcher page): run explainers live on one image, side by side,
with timings. This is the one page that runs models; torch is imported lazily here."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cfviewer.errors import CfviewerError, ImageLoadError
from cfviewer.study import cases

UPLOAD_TYPES = ["dcm", "dicom", "png", "jpg", "jpeg", "npy"]


@dataclass
class SandboxResult:
    name: str
    seconds: float
    error: str | None = None
    overlay_png: bytes | None = None
    gif: bytes | None = None
    pred_original: float | None = None
    pred_reconstruction: float | None = None
    pred_counterfactual: float | None = None
    timings: dict[str, float] | None = None
    domain: Any = None
    """cfviewer.models.domain.DomainCheck of the image (outside the bundle's training domain?)"""

    @property
    def ok(self) -> bool:
        return self.error is None


def domain_check(bundle: Any, image: np.ndarray, what: str = "image"):
    """Whether `image` lies outside the bundle's training domain (cfviewer.models.domain): a
    DomainCheck whose `.warning` is True when it does, with the message to show
    (`st.warning(check.message)`); an unknown domain or a failed check gives an info message."""
    from cfviewer.models import domain

    return domain.safe_check(lambda: domain.check_images(bundle, [image], what=what, keys=[0]), what, 1)


def domain_label(check: Any) -> str:
    """One word or two for a table: outside / inside / unknown."""
    if check is None or not check.known:
        return "unknown"
    return "OUTSIDE: unreliable" if check.warning else "inside"


def load_upload(filename: str, data: bytes) -> np.ndarray:
    """An uploaded DICOM / PNG / JPEG / .npy as float32 H x W in [-1024, 1024]."""
    from cfviewer import imaging

    if not data:
        raise ImageLoadError(filename, "the uploaded file is empty")
    suffix = Path(filename).suffix.lower() or ".bin"
    with tempfile.TemporaryDirectory(prefix="cfviewer-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return imaging.load(path)
        except ImageLoadError as exc:
            raise ImageLoadError(Path(filename).name, _without_paths(exc.reason, (path, tmp), filename)) from None
        except Exception as exc:  # noqa: BLE001 - a reader library's own error: said plainly
            raise ImageLoadError(Path(filename).name, _without_paths(
                f"{type(exc).__name__}: {exc}", (path, tmp), filename)) from None


def _without_paths(text: str, paths, filename: str) -> str:
    """`text` with the server's temporary paths replaced by the user's file name (an error
    message must not show where the server keeps its files)."""
    name = Path(filename).name
    for p in sorted((str(x) for x in paths), key=len, reverse=True):
        text = text.replace(p, name)
    return text


RESULTS_KEY = "cfv_sandbox"


def image_identity(kind: str, name: str, data: bytes | None = None) -> str:
    """What the sandbox's results belong to: a study case, or an uploaded file (its name and a
    hash of its bytes, so a different file under the same name is a different image)."""
    import hashlib

    digest = hashlib.sha256(data).hexdigest()[:16] if data is not None else ""
    return f"{kind}:{name}:{digest}"


def keep_results(state, source_id: str, results) -> None:
    state[RESULTS_KEY] = (source_id, results)


def results_for(state, source_id: str):
    """The stored results when they were computed on `source_id`, else None."""
    kept = state.get(RESULTS_KEY)
    if not isinstance(kept, tuple) or len(kept) != 2 or kept[0] != source_id:
        return None
    return kept[1]


def forget_results(state, unless: str | None = None) -> None:
    """Drop the stored results (the table and tiles) unless they belong to `unless`."""
    kept = state.get(RESULTS_KEY)
    if kept is not None and (unless is None or not isinstance(kept, tuple) or kept[0] != unless):
        state.pop(RESULTS_KEY, None)


def case_image(db, study_name: str, case_key: str) -> np.ndarray:
    return cases.case_image(db, study_name, case_key)


def cohort_cases(db, study_name: str) -> list[tuple[str, str, str]]:
    """(case key, pathology judged, TP/FP) of the cohort, in drawing order."""
    return cases.cohort_cases(db, study_name)


def run_explainers(bundle: Any, image: np.ndarray, target: str, names: Sequence[str],
                   params: Mapping[str, Mapping[str, Any]] | None = None, *, opacity: float = 0.6,
                   tile: int = 384, gif_size: int = 256) -> list[SandboxResult]:
    """Explain `target` on `image` with each explainer; one failure does not stop the others
    (its message is in the result)."""
    from PIL import Image

    from cfviewer.explain import get_explainer
    from cfviewer.explain.render import overlay, write_gif
    from cfviewer.ui.viewer import png_bytes

    bundle.target_index(target)  # unknown pathology: a clear error before any work
    dom = domain_check(bundle, image)
    out: list[SandboxResult] = []
    for name in names:
        t0 = time.perf_counter()
        try:
            e = get_explainer(name, bundle, **dict((params or {}).get(name, {}))).explain(image, target)
            seconds = time.perf_counter() - t0
            rgb = overlay(e.image, e.map, opacity=opacity)
            ov = png_bytes(Image.fromarray(rgb).resize((tile, tile), Image.BICUBIC))
            gif = None
            if e.frames is not None and len(e.frames):
                with tempfile.TemporaryDirectory(prefix="cfviewer-gif-") as tmp:
                    gif = write_gif(e, Path(tmp) / "a.gif", size=gif_size).read_bytes()
            out.append(SandboxResult(
                name, seconds, None, ov, gif, float(e.pred_original),
                None if e.pred_reconstruction is None else float(e.pred_reconstruction),
                None if e.frame_preds is None else float(e.frame_preds[0]),
                {k: float(v) for k, v in e.timings.items()}, domain=dom))
        except CfviewerError as exc:
            out.append(SandboxResult(name, time.perf_counter() - t0, str(exc), domain=dom))
        except Exception as exc:  # a method bug must not take the page down
            out.append(SandboxResult(name, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}", domain=dom))
    return out


def timing_table(results: Sequence[SandboxResult]):
    import pandas as pd

    return pd.DataFrame([{
        "explainer": r.name,
        "seconds": round(r.seconds, 3),
        "prediction": r.pred_original,
        "on reconstruction (SAGen: g_s(x))": r.pred_reconstruction,
        "on counterfactual": r.pred_counterfactual,
        "training domain": domain_label(r.domain),
        "status": "ok" if r.ok else r.error,
    } for r in results])
