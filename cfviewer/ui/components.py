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
    """One radio per question (values 1..5 with their anchor labels; laid out as five equal
    cells by READER_CSS so no anchor breaks onto a line of its own), no default selection
    unless an answer is stored. `highlight`: keys of questions left unanswered at the last
    Save, labelled in red. Must be called inside a form."""
    values: dict[str, int | None] = {}
    for q in questions:
        anchors = list(q.get("anchors") or [str(v) for v in range(1, 6)])
        stored = answers.get(q["key"])
        label = q["text"] + ("" if q.get("required", True) else " (optional)")
        if q["key"] in highlight:
            label = f":red[**{label}** (please answer)]"
        values[q["key"]] = st.radio(
            label, options=[1, 2, 3, 4, 5], index=(stored - 1) if stored in range(1, 6) else None,
            format_func=lambda v, a=anchors: a[v - 1], horizontal=True,
            key=f"{key_prefix}_{q['key']}")
    return values


# --------------------------------------------------------------------------- case page frame
FILM_OFFSET_PX = 300
"""Vertical space the case page needs besides the film (navigation, progress and prediction,
the control row, the caption): the film's height is capped at 100vh minus this, so the whole
film stays on screen (1280 x 800 and 1920 x 1080)."""
TILE_HEIGHT = "clamp(150px, calc(100vh - 640px), 360px)"
"""Height of every explanation tile (heat map and animation alike, so their row lines up)."""

READER_CSS = f"""<style>
/* the case page: everything on one screen below the prediction */
[data-testid='stMainBlockContainer']{{padding-top:3.5rem;padding-bottom:0.5rem}}
.st-key-cfv_film [data-testid='stImage'] img{{max-height:calc(100vh - {FILM_OFFSET_PX}px);width:100% !important;
  height:auto;object-fit:contain;display:block}}
.st-key-cfv_film [data-testid='stImage']{{align-items:center}}
.st-key-cfv_film [data-testid='stFullScreenFrame']{{margin-top:6px}}
.st-key-cfv_tiles [data-testid='stImage'] img{{height:{TILE_HEIGHT};width:100% !important;
  object-fit:contain;display:block}}
.st-key-cfv_right, .st-key-cfv_right_form{{gap:0.55rem}}
.st-key-cfv_answers [data-testid='stForm']{{padding:0.6rem 0.9rem}}
.st-key-cfv_answers [data-testid='stForm'] > div{{gap:0.55rem}}
.st-key-cfv_answers [data-testid='stAlert'] > div{{padding:0.35rem 0.6rem}}
.st-key-cfv_answers [data-testid='stAlert'] p{{font-size:0.8rem;line-height:1.25}}
.st-key-cfv_tiles [data-testid='stImage']{{align-items:center}}
/* fullscreen (the frame's child gets a height only then): a dark surround, the film as large as
   the screen allows, as on a reading workstation */
[data-testid='stFullScreenFrame']:has(> div[height]){{background:#000 !important;color:#ddd}}
[data-testid='stFullScreenFrame']:has(> div[height]) [data-testid='stImage'] img{{max-height:calc(100vh - 4rem) !important;
  height:calc(100vh - 4rem) !important;width:auto !important;max-width:100% !important;object-fit:contain;margin:0 auto}}
[data-testid='stFullScreenFrame']:has(> div[height]) [data-testid='stImageCaption']{{color:#bbb}}
[data-testid='stFullScreenFrame']:has(> div[height]) [data-testid='stElementToolbar'] button{{color:#eee}}
/* Likert: five equal cells, each anchor kept in its own cell */
.st-key-cfv_answers [role='radiogroup']{{display:grid !important;grid-template-columns:repeat(5,minmax(0,1fr));
  gap:0.15rem 0.4rem;width:100%}}
.st-key-cfv_answers [role='radiogroup'] label{{margin:0;align-items:flex-start}}
.st-key-cfv_answers [role='radiogroup'] label p{{font-size:0.82rem;line-height:1.2}}
.st-key-cfv_answers [data-testid='stRadio']{{margin-bottom:-0.4rem}}
/* the window/level popover: wide sliders */
[data-testid='stPopoverBody']:has(.st-key-cfv_wl){{min-width:min(440px, 90vw)}}
.st-key-cfv_prediction h4{{padding:0.1rem 0}}
</style>"""

SCROLL_TOP_JS = """<script>
(() => {{  // case {case}: open at the top (Streamlit keeps the scroll position between runs)
  const doc = window.parent && window.parent.document ? window.parent.document : document;
  const top = () => {{
    for (const el of [doc.scrollingElement, doc.querySelector('[data-testid="stMain"]'),
                      doc.querySelector('[data-testid="stAppViewContainer"]'),
                      doc.querySelector('section.stMain'), doc.querySelector('.main')]) {{
      if (el && el.scrollTop) el.scrollTop = 0;
    }}
  }};
  top(); for (const ms of [30, 120, 300, 700]) setTimeout(top, ms);
}})();
</script>"""


def case_frame(case_id: int) -> None:
    """The case page's style (READER_CSS) and a script that scrolls to the top whenever a
    different case is shown (its text names the case, so it runs again for each new case and
    not on the reruns of one case, where the reader's own scrolling is kept)."""
    st.html(READER_CSS)
    st.html(SCROLL_TOP_JS.format(case=int(case_id)), unsafe_allow_javascript=True)


def window_controls(img, key: str) -> tuple[viewer.Window, float, float, float]:
    """Window/level preset + level and width sliders (full width) and zoom/pan; returns
    (window, zoom, pan_x, pan_y). Settings persist per reader session (not per case), like a
    workstation. Drawn in one column (the popover of `image_viewer`)."""
    with st.container(key="cfv_wl"):
        preset = st.selectbox("Window preset", list(viewer.WINDOW_PRESETS), key=f"{key}_preset",
                              help="Presets from the image's own grey levels; fine-tune below.")
        base = viewer.preset_window(img, preset)
        center = st.slider("Level (centre)", -1024, 1024, int(base.center), step=4,
                           key=f"{key}_center_{preset}_{int(base.center)}")
        width = st.slider("Width", 16, 2048, int(min(max(base.width, 16), 2048)), step=8,
                          key=f"{key}_width_{preset}_{int(base.width)}")
        zoom = st.slider("Zoom", 1.0, 4.0, 1.0, step=0.25, key=f"{key}_zoom", format="%.2fx")
        z2, z3 = st.columns(2)
        pan_x = z2.slider("Pan left/right", 0, 100, 50, step=5, key=f"{key}_panx", disabled=zoom <= 1.0,
                          format="%d%%")
        pan_y = z3.slider("Pan up/down", 0, 100, 50, step=5, key=f"{key}_pany", disabled=zoom <= 1.0,
                          format="%d%%")
    return viewer.Window(float(center), float(width)), float(zoom), pan_x / 100.0, pan_y / 100.0


# --------------------------------------------------------------------------- case viewer
def _frame_info(media_list) -> tuple[Any, list] | tuple[None, list]:
    """(media with frames, slider steps) for the first explanation that has frames."""
    from cfviewer.explain.frames import start_frame_of
    from cfviewer.ui.reading import frame_steps

    for m in media_list:
        if m.has_frames:
            data = viewer.load_frames(m.frames_path)
            preds = data.get("frame_preds")
            lambdas = data.get("lambdas")
            start = "reconstruction"
            if m.json_path is not None:
                info = viewer.read_json(m.json_path)
                info = info.get("explanation", info)  # precompute nests Explanation.summary()
                preds = preds if preds is not None else info.get("frame_preds")
                lambdas = lambdas if lambdas is not None else info.get("lambdas")
                # the reconstruction, SAGen's g_s(x), or the image itself (Attri-Net, inpainting)
                start = start_frame_of(info)
            return m, frame_steps(len(data["frames"]), lambdas, preds, start=start)
    return None, []


def image_viewer(view, media_list) -> None:
    """The radiograph (or a counterfactual frame) large, lossless (PNG at the stored film's
    resolution, never re-encoded), whole on screen, with window/level and zoom."""
    if view.image is None:
        st.warning("The radiograph of this case has not been prepared (precompute incomplete). "
                   "Please tell the researcher; you can still go back to the worklist.",
                   icon=":material/broken_image:")
        return
    img = viewer.load_pixels(view.image)
    fmedia, steps = _frame_info(media_list)
    step = None
    with st.container(key="cfv_film"):
        # the popover first (left): it opens over the film, never over the explanations
        c1, c2, c3 = st.columns([1.0, 1.2, 1.5], vertical_alignment="center")
        with c1.popover("W/L · zoom", icon=":material/tune:", width="stretch",
                        help="Window / level presets and sliders, zoom and pan"):
            window, zoom, pan_x, pan_y = window_controls(img, "cfv_view")
        if fmedia is not None and steps:
            counterfactual = c2.toggle(
                "Counterfactual", key="cfv_show",
                help="Off: the original radiograph. On: the image changed step by step until the "
                     "model's prediction drops; the slider steps through the frames.")
            k = c3.slider("Frame", 0, len(steps) - 1, len(steps) - 1, key=f"cfv_frame_{view.assignment_id}",
                          disabled=not counterfactual, label_visibility="collapsed",
                          help="Frame 0 = the autoencoder's reconstruction (SAGen: the similar image g_s(x); "
                               "the image itself for a model without an autoencoder), last = the counterfactual")
            if counterfactual:
                step = steps[k]
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
        st.image(png, caption=caption, width="stretch", output_format="PNG")


def explanation_tiles(view, media_list) -> None:
    """The arm's explanations side by side (neutral labels), overlays with an opacity control,
    the counterfactual animation looping; every tile the same height (TILE_HEIGHT)."""
    if not media_list:
        st.info("This method shows no explanation images.")
        return
    tiles: list[tuple[str, Any, str]] = []  # (title, image, kind)
    has_map = any(m.map_path is not None and view.image is not None for m in media_list)
    opacity = 0.6
    if has_map:
        opacity = st.slider("Explanation opacity", 0.0, 1.0, 0.6, step=0.05, key="cfv_opacity",
                            help="0 shows the radiograph alone, 1 the explanation colours fully.")
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
    with st.container(key="cfv_tiles"):
        cols = st.columns(len(tiles), vertical_alignment="top")
        for col, (title, data, kind) in zip(cols, tiles):
            with col:
                if data is None:
                    st.warning(f"{title}: not available for this case", icon=":material/broken_image:")
                else:  # PNG stays PNG; a GIF is served as it is (multi-frame)
                    st.image(data, caption=title, width="stretch",
                             output_format="PNG" if kind != "gif" else "auto")
    if any(k == "gif" for _, _, k in tiles):
        from cfviewer.ui.reading import animation_note

        st.caption(animation_note(_frame_info(media_list)[1]))


def answer_form(view, highlight: tuple[str, ...] = (),
                on_submit=None) -> tuple[bool, dict[str, int | None], str, Any]:
    """The study's questions + optional comment in one form, with a message slot beside Save
    (for the validation message: it must show where the reader clicked). `highlight`: keys of
    unanswered questions to mark; `on_submit`: the Save button's callback (runs before the
    rerun, e.g. to work out what to highlight). Returns (submitted, answers, comment, slot)."""
    with st.container(key="cfv_answers"), st.form(f"cfv_form_{view.assignment_id}", border=True,
                                                   enter_to_submit=False):
        values = likert_inputs(view.questions, view.answers, f"cfv_q_{view.assignment_id}", highlight)
        comment = st.text_input("Comment (optional)", value=view.comment or "",
                                max_chars=10_000, key=f"cfv_c_{view.assignment_id}",
                                placeholder="Comment (optional): anything the researchers should know about this case",
                                label_visibility="collapsed")
        b1, b2 = st.columns([1, 2.6], vertical_alignment="center")
        submitted = b1.form_submit_button("Save and next", type="primary", icon=":material/arrow_forward:",
                                          on_click=on_submit, width="stretch")
        slot = b2.empty()
    return submitted, values, comment or "", slot
