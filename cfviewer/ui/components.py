"""Streamlit widgets shared by the pages: progress, the Likert form, the image viewer controls.
They draw and return values; decisions (saving, navigation) stay in cfviewer.ui.reading."""

from __future__ import annotations

from typing import Any

import streamlit as st

from cfviewer.study.responses import Progress
from cfviewer.ui import viewer
from cfviewer.ui.reading import SessionRow


def progress_header(progress: Progress, session: int, sessions_total: int, position_text: str = "") -> None:
    cur = next((sp for sp in progress.sessions if sp.session == session), None)
    frac = progress.done / progress.total if progress.total else 0.0
    label = f"{progress.done} of {progress.total} cases done"
    if cur is not None:
        label += f" · session {session} of {sessions_total}: {cur.done} of {cur.total}"
    if position_text:
        label = f"{position_text} · {label}"
    st.progress(frac, text=label)


def session_table(rows: list[SessionRow]) -> None:
    icons = {"finished": ":material/check_circle:", "in progress": ":material/pending:",
             "open": ":material/play_circle:", "locked": ":material/lock:",
             "opens later": ":material/schedule:"}
    for r in rows:
        c1, c2, c3 = st.columns([1.2, 1, 3], vertical_alignment="center")
        c1.markdown(f"{icons.get(r.status, '')} **Session {r.session}**")
        c2.markdown(f"{r.done} / {r.total}")
        c3.markdown(f"{r.status.capitalize()}: {r.detail}")


def likert_inputs(questions: list[dict[str, Any]], answers: dict[str, int], key_prefix: str,
                  highlight: tuple[str, ...] = ()) -> dict[str, int | None]:
    """One horizontal radio per question (values 1..5 shown with their anchor labels), no
    default selection unless an answer is stored. Must be called inside a form."""
    values: dict[str, int | None] = {}
    for q in questions:
        anchors = list(q.get("anchors") or [str(v) for v in range(1, 6)])
        stored = answers.get(q["key"])
        label = q["text"] + ("" if q.get("required", True) else " (optional)")
        if q["key"] in highlight:
            label = f":red[{label}]"
        values[q["key"]] = st.radio(
            label, options=[1, 2, 3, 4, 5], index=(stored - 1) if stored in range(1, 6) else None,
            format_func=lambda v, a=anchors: a[v - 1], horizontal=True,
            key=f"{key_prefix}_{q['key']}")
    return values


def window_controls(img, key: str) -> tuple[viewer.Window, float, float, float]:
    """Window/level preset + fine sliders and zoom/pan; returns (window, zoom, pan_x, pan_y).
    Settings persist per reader session (not per case), like a workstation."""
    c1, c2, c3 = st.columns([1.3, 1, 1])
    preset = c1.selectbox("Window", list(viewer.WINDOW_PRESETS), key=f"{key}_preset",
                          help="Presets from the image's own grey levels; fine-tune below.")
    base = viewer.preset_window(img, preset)
    center = c2.slider("Level", -1024, 1024, int(base.center), step=8, key=f"{key}_center_{preset}_{int(base.center)}")
    width = c3.slider("Width", 16, 2048, int(min(max(base.width, 16), 2048)), step=16,
                      key=f"{key}_width_{preset}_{int(base.width)}")
    z1, z2, z3 = st.columns([1.3, 1, 1])
    zoom = z1.slider("Zoom", 1.0, 4.0, 1.0, step=0.25, key=f"{key}_zoom", format="%.2fx")
    pan_x = z2.slider("Pan left/right", 0, 100, 50, step=5, key=f"{key}_panx", disabled=zoom <= 1.0,
                      format="%d%%")
    pan_y = z3.slider("Pan up/down", 0, 100, 50, step=5, key=f"{key}_pany", disabled=zoom <= 1.0,
                      format="%d%%")
    return viewer.Window(float(center), float(width)), float(zoom), pan_x / 100.0, pan_y / 100.0


# --------------------------------------------------------------------------- case viewer
def _frame_info(media_list) -> tuple[Any, list] | tuple[None, list]:
    """(media with frames, slider steps) for the first explanation that has frames."""
    from cfviewer.ui.reading import frame_steps

    for m in media_list:
        if m.has_frames:
            data = viewer.load_frames(m.frames_path)
            preds = data.get("frame_preds")
            lambdas = data.get("lambdas")
            if (preds is None or lambdas is None) and m.json_path is not None:
                info = viewer.read_json(m.json_path)
                info = info.get("explanation", info)  # precompute nests Explanation.summary()
                preds = preds if preds is not None else info.get("frame_preds")
                lambdas = lambdas if lambdas is not None else info.get("lambdas")
            return m, frame_steps(len(data["frames"]), lambdas, preds)
    return None, []


def image_viewer(view, media_list) -> None:
    """The radiograph (or a counterfactual frame) large, with window/level and zoom."""
    if view.image is None:
        st.warning("The radiograph of this case has not been prepared (precompute incomplete). "
                   "Please tell the researcher; you can still go back to the worklist.",
                   icon=":material/broken_image:")
        return
    img = viewer.load_pixels(view.image)
    fmedia, steps = _frame_info(media_list)
    step = None
    c1, c2, c3 = st.columns([1.05, 1.55, 0.9], vertical_alignment="bottom")
    if fmedia is not None and steps:
        counterfactual = c1.toggle(
            "Counterfactual", key="cfv_show",
            help="Off: the original radiograph. On: the image changed step by step until the "
                 "model's prediction drops; the slider steps through the frames.")
        if counterfactual:
            k = c2.slider("Frame (0 = unchanged, last = counterfactual)", 0, len(steps) - 1,
                          len(steps) - 1, key=f"cfv_frame_{view.assignment_id}")
            step = steps[k]
    with c3.popover("W/L · zoom", icon=":material/tune:", width="stretch",
                    help="Window / level presets and sliders, zoom and pan"):
        window, zoom, pan_x, pan_y = window_controls(img, "cfv_view")
    if step is None:
        fov = getattr(view, "field_of_view", None)
        png = viewer.render_image(view.image, window, zoom, pan_x, pan_y, fov=fov)
        caption = (f"Original radiograph, {img.shape[1]} x {img.shape[0]} px · "
                   f"level {window.center:g}, width {window.width:g}" + (f" · zoom {zoom:g}x" if zoom > 1 else "")
                   + (" · amber frame: the square the model saw (explanations show only this part)"
                      if fov is not None else ""))
    else:
        png = viewer.render_frame(fmedia.frames_path, step.frame_index, window, zoom, pan_x, pan_y)
        from cfviewer.ui.reading import frame_caption

        caption = frame_caption(step, len(steps) - 1, view.pathology, view.probability)
    st.image(png, caption=caption, width="stretch")


def explanation_tiles(view, media_list) -> None:
    """The arm's explanations side by side (neutral labels), overlays with an opacity control,
    the counterfactual animation looping."""
    if not media_list:
        st.info("This method shows no explanation images.")
        return
    opacity = st.slider("Explanation opacity", 0.0, 1.0, 0.6, step=0.05, key="cfv_opacity",
                        help="0 shows the radiograph alone, 1 the explanation colours fully.")
    tiles: list[tuple[str, Any, str]] = []  # (title, image, kind)
    img_window = None
    if view.image is not None:
        img_window = viewer.preset_window(viewer.load_pixels(view.image), "Auto")
    for m in media_list:
        if m.map_path is not None and view.image is not None:
            tiles.append((f"{m.label}: heat map", viewer.render_overlay(
                view.image, m.map_path, opacity, img_window, fov=getattr(view, "field_of_view", None)), "map"))
        elif m.overlay_path is not None:
            tiles.append((f"{m.label}: heat map", viewer.read_bytes(m.overlay_path), "map"))
        if m.gif_path is not None:
            tiles.append((f"{m.label}: animation", viewer.read_bytes(m.gif_path), "gif"))
        if m.is_empty:
            tiles.append((m.label, None, "missing"))
    cols = st.columns(len(tiles))
    for col, (title, data, kind) in zip(cols, tiles):
        with col:
            if data is None:
                st.warning(f"{title}: not available for this case", icon=":material/broken_image:")
            else:
                st.image(data, caption=title, width="stretch")
    if any(k == "gif" for _, _, k in tiles):
        st.caption("The animation loops from the autoencoder's reconstruction of the radiograph "
                   "(lambda = 0) to the counterfactual and back. Its first frame gives the model's "
                   "probability on the original and on the reconstruction, the others lambda and "
                   "the probability on that frame; the bar shows that probability.")


def answer_form(view, highlight: tuple[str, ...] = ()) -> tuple[bool, dict[str, int | None], str]:
    """The study's questions + optional comment in one form. Returns (submitted, answers, comment)."""
    with st.form(f"cfv_form_{view.assignment_id}", border=True, enter_to_submit=False):
        values = likert_inputs(view.questions, view.answers, f"cfv_q_{view.assignment_id}", highlight)
        comment = st.text_area("Comment (optional)", value=view.comment or "", height=68,
                               max_chars=10_000, key=f"cfv_c_{view.assignment_id}",
                               placeholder="Anything the researchers should know about this case")
        submitted = st.form_submit_button("Save and next", type="primary", icon=":material/arrow_forward:")
    return submitted, values, comment or ""
