"""What the reader pages show, over the study engine's reader flow (`cfviewer.study.reader_flow`:
which read to open, its files, saving answers, Back, the worklist): neutral explanation labels,
the counterfactual slider, the messages and the worklist's session table.

The database is the truth: the page only remembers which read is on screen when the reader
stepped Back; a reload, a new tab or a restarted server shows the resume point that
`responses.next_assignment` computes. Readers see arm display names and neutral explanation
labels ("Explanation 1"), never method names, ground truth or other readers' answers.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from cfviewer.explain.frames import START_FRAMES, check_start_frame
from cfviewer.study import reader_flow as flow
from cfviewer.study import responses as R
from cfviewer.study.errors import StudyError
from cfviewer.study.schema import Assignment, Reader, utcnow


# --------------------------------------------------------------------------- media
@dataclass(frozen=True)
class ExplanationMedia:
    """The precomputed files of one explainer of the arm, under a neutral label."""

    index: int  # 1-based position in the arm
    map_path: Path | None = None
    overlay_path: Path | None = None
    gif_path: Path | None = None
    counterfactual_path: Path | None = None
    frames_path: Path | None = None
    json_path: Path | None = None

    @property
    def label(self) -> str:
        return f"Explanation {self.index}"

    @property
    def has_frames(self) -> bool:
        return self.frames_path is not None

    @property
    def is_empty(self) -> bool:
        return not any((self.map_path, self.overlay_path, self.gif_path, self.frames_path,
                        self.counterfactual_path))


_KIND_FIELD = {"map_npy": "map_path", "overlay_png": "overlay_path", "gif": "gif_path",
               "counterfactual_png": "counterfactual_path", "frames_npz": "frames_path",
               "explanation_json": "json_path"}


def media_of(files: Mapping[int, Mapping[str, Path]]) -> list[ExplanationMedia]:
    """ExplanationMedia from `reader_flow.arm_files` (the arm's order, known kinds only)."""
    return [ExplanationMedia(index=i + 1, **{_KIND_FIELD[k]: p for k, p in files[i].items() if k in _KIND_FIELD})
            for i in sorted(files)]


def explanation_media(session, assignment: Assignment) -> list[ExplanationMedia]:
    """The arm's explanations for this read, in the arm's order (done artifacts only)."""
    return media_of(flow.arm_files(session, assignment))


@dataclass(frozen=True)
class FrameStep:
    """One position of the counterfactual slider (0 = unchanged, last = counterfactual)."""

    step: int
    frame_index: int  # index into the frames array
    prediction: float | None
    lam: float | None = None  # the frame's lambda (0 = the unchanged frame)
    start: str = "reconstruction"  # what the lambda = 0 frame is (cfviewer.explain.frames.START_FRAMES)


def frame_steps(n_frames: int, lambdas: Any = None, preds: Any = None,
                start: str = "reconstruction") -> list[FrameStep]:
    """Slider positions from the unshifted image to the counterfactual.

    Frames are stored by increasing lambda (the counterfactual first); only the lowering
    direction (lambda <= 0) is shown, like the animation. ``start`` says what the lambda = 0
    frame is (:func:`cfviewer.explain.frames.start_frame_of` of the explanation's record): the
    autoencoder's reconstruction, SAGen's similar image g_s(x) (``"similar"``), or the image
    itself (``"image"``: Attri-Net, inpainting)."""
    start = check_start_frame(start)
    idx = list(range(n_frames))
    if lambdas is not None and len(lambdas) == n_frames:
        neg = [i for i in idx if float(lambdas[i]) <= 0]
        idx = neg or idx
    idx = idx[::-1]  # lambda 0 first, counterfactual last
    out = []
    for step, i in enumerate(idx):
        p = None
        if preds is not None and len(preds) == n_frames:
            v = float(preds[i])
            p = v if math.isfinite(v) else None
        lam = float(lambdas[i]) if lambdas is not None and len(lambdas) == n_frames else None
        out.append(FrameStep(step, i, p, lam, start))
    return out


def frame_caption(step: FrameStep, last: int, pathology: str, pred_original: float | None) -> str:
    """The slider's caption, named as in the animation: the unshifted frame (lambda = 0) is
    the autoencoder's reconstruction (or SAGen's similar image), so it gives the original's
    probability (the one the reader is told) and that frame's; the other frames their lambda and
    probability."""
    def p(v: float | None) -> str:
        return f"{v:.2f}" if v is not None and math.isfinite(v) else "not recorded"

    if step.lam == 0.0 or (step.lam is None and step.step == 0):
        what = START_FRAMES[step.start]
        head = f"Counterfactual frame {step.step} of {last}: {what['long']} (lambda = 0) · {pathology}: "
        if step.start == "image":
            return head + f"original p = {p(pred_original)}"
        return head + f"original p = {p(pred_original)} · {what['short']} p = {p(step.prediction)}"
    lam = f"lambda = {step.lam:.3g}, " if step.lam is not None else ""
    return f"Counterfactual frame {step.step} of {last} · {pathology}: {lam}p = {p(step.prediction)}"


def animation_note(steps: list[FrameStep]) -> str:
    """The caption under the animation tiles: what frame 0 is (the reconstruction, SAGen's
    similar image, or the image itself for a model without an autoencoder)."""
    start = steps[0].start if steps else "reconstruction"
    return ("Heading: the model's probability on the **original** film. Animation: frame 0 is "
            f"{START_FRAMES[start]['note']}, then p on each **changed** image (the bar).")


# --------------------------------------------------------------------------- screens
@dataclass
class Screen:
    """What the case page shows."""

    kind: Literal["case", "waiting", "done", "empty"]
    progress: R.Progress
    view: R.ReadView | None = None
    media: list[ExplanationMedia] = field(default_factory=list)
    answered: bool = False  # the read on screen already has answers (the reader went Back)
    opens_at: dt.datetime | None = None
    session: int = 0
    sessions_total: int = 0
    shown_at: dt.datetime | None = None


def open_screen(db, reader: Reader, requested: int | None = None,
                now: dt.datetime | None = None) -> Screen:
    """The read to show: `requested` when it is one the reader may open (an answered read
    of the current or just-finished session, reached with Back), else the resume point.
    Records when an unanswered read is first shown (server time). `reader_flow.open_read`."""
    o = flow.open_read(db, reader, requested, now=now)
    return Screen(o.kind, o.progress, view=o.view, media=media_of(o.files) if o.view is not None else [],
                  answered=o.answered, opens_at=o.opens_at, session=o.session,
                  sessions_total=o.sessions_total, shown_at=o.shown_at)


upcoming_read = flow.upcoming_read
"""The reader's first unanswered read after `assignment_id` (the likely next case)."""


def prefetch_next(db, reader: Reader, assignment_id: int, opacity: float = 0.6, wait: bool = False):
    """Warm the image caches for the reader's next case while they read this one, so the
    Next click only reads the database. Runs in a daemon thread (`wait=True`: inline).
    Never raises: a failed prefetch only means the next case renders on demand."""
    import threading

    from cfviewer.ui import viewer

    def work() -> None:
        try:
            nxt = flow.upcoming_view(db, reader, assignment_id)
            if nxt is None:
                return
            view, files = nxt
            viewer.render_defaults(view.image, media_of(files), opacity, view.field_of_view)
        except Exception:  # noqa: BLE001 - best effort by design
            return

    if wait:
        work()
        return None
    t = threading.Thread(target=work, name="cfviewer-prefetch", daemon=True)
    t.start()
    return t


# --------------------------------------------------------------------------- answers
@dataclass(frozen=True)
class SubmitOutcome:
    saved: bool
    message: str | None = None  # for the reader when nothing was saved
    missing: tuple[str, ...] = ()  # keys of required questions left empty
    next_id: int | None = None  # the read to show next (None = the resume point)
    edited: int = 0


def missing_answers(questions: list[dict[str, Any]], answers: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [q for q in questions if q.get("required", True) and answers.get(q["key"]) is None]


def submit(db, reader: Reader, view: R.ReadView, answers: Mapping[str, Any],
           comment: str | None = None, now: dt.datetime | None = None) -> SubmitOutcome:
    """Save the answers of the read on screen. Nothing is saved while a required question is
    unanswered; the message names the questions. After saving, the next read is the
    following one of the session when that was answered already (stepping forward after
    Back), else the resume point."""
    missing = missing_answers(view.questions, answers)
    if missing:
        names = "; ".join(f"\u201c{q['text']}\u201d" for q in missing)
        return SubmitOutcome(False, f"Please answer every question before moving on. "
                                    f"Still open: {names}", tuple(q["key"] for q in missing))
    clean = {k: v for k, v in answers.items() if v is not None}
    try:
        saved = flow.save_answers(db, reader, view.assignment_id, clean, comment=comment, now=now)
    except StudyError as exc:
        return SubmitOutcome(False, f"Your answers were not saved: {exc}")
    return SubmitOutcome(True, None, (), saved.next_id, saved.result.edited)


def go_back(db, reader: Reader, assignment_id: int | None) -> tuple[int | None, str | None]:
    """(read to show, message): the previous read of the session, or None with the reason."""
    prev = flow.previous_read(db, reader, assignment_id)
    if prev is None:
        return None, ("This is the first case of this session. Cases of earlier sessions cannot "
                      "be changed (the washout between sessions).")
    return prev, None


# --------------------------------------------------------------------------- worklist
def worklist(db, reader: Reader, now: dt.datetime | None = None) -> tuple[R.Progress, R.NextRead]:
    """The reader's progress and resume point (one read transaction)."""
    return flow.worklist(db, reader, now=now)


@dataclass(frozen=True)
class SessionRow:
    session: int
    done: int
    total: int
    status: str  # "finished", "in progress", "open", "locked", "opens later"
    detail: str


def session_rows(progress: R.Progress, now: dt.datetime | None = None) -> list[SessionRow]:
    """One plain-language row per reading session (the washout design)."""
    now = now or utcnow()
    rows = []
    for sp in progress.sessions:
        if sp.done == sp.total:
            status, detail = "finished", f"all {sp.total} cases answered"
        elif sp.session == progress.current_session:
            if sp.opens_at is not None and now < sp.opens_at and sp.done == 0:
                status = "opens later"
                detail = f"opens {format_when(sp.opens_at, now)} (washout after session {sp.session - 1})"
            elif sp.done:
                status, detail = "in progress", f"{sp.total - sp.done} cases left"
            else:
                status, detail = "open", "ready to start"
        else:
            status = "locked"
            detail = (f"opens after session {sp.session - 1} is finished"
                      + (" and the washout gap has passed" if _has_gap(progress) else ""))
        rows.append(SessionRow(sp.session, sp.done, sp.total, status, detail))
    return rows


def _has_gap(progress: R.Progress) -> bool:
    return any(sp.opens_at is not None for sp in progress.sessions)


def format_when(when: dt.datetime, now: dt.datetime | None = None) -> str:
    """'at 2026-11-22 14:00 UTC (in 3 h 20 min)'."""
    now = now or utcnow()
    secs = max(0, int((when - now).total_seconds()))
    d, rem = divmod(secs, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    parts = ([f"{d} d"] if d else []) + ([f"{h} h"] if h else []) + ([f"{m} min"] if m or not (d or h) else [])
    return f"at {when.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC (in {' '.join(parts)})"


def prediction_sentence(pathology: str, probability: float) -> str:
    """The same wording in every arm."""
    return f"The model predicts {pathology}, probability {probability:.2f}"
