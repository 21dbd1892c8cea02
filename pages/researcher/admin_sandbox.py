"""Explainer sandbox: run explainers live on a study case or an uploaded DICOM / PNG, side by
side, with timings. The only page that runs models (through cfviewer.ui.sandbox)."""

import streamlit as st

from cfviewer.errors import CfviewerError
from cfviewer.ui import research, resources, sandbox, shell

s, name = shell.researcher_sidebar()
shell.require_study(s, name)
st.title("Explainer sandbox")
ov = research.overview(s.db, name)
try:
    bdir = research.resolve_bundle_dir(ov.root, ov.config.get("bundle"))
    bundle = resources.bundle(str(bdir))
except CfviewerError as exc:
    st.error(f"No model to run: {exc}")
    st.stop()

from cfviewer.explain import list_explainers  # noqa: E402  (imports torch: researcher page only)

src = st.radio("Image", ["A case of the study", "Upload a DICOM / PNG / JPEG"], horizontal=True)
image, default_target = None, bundle.pathologies[0]
if src.startswith("A case"):
    cases = sandbox.cohort_cases(s.db, name)
    if not cases:
        st.info("The study has no cohort yet; upload an image instead.")
        st.stop()
    pick = st.selectbox("Case", cases, format_func=lambda c: f"{c[0]} · {c[1]} ({c[2]})")
    source_id = sandbox.image_identity("case", pick[0])
    try:
        image = sandbox.case_image(s.db, name, pick[0])
    except CfviewerError as exc:
        st.error(str(exc))
        st.stop()
    default_target = pick[1]
else:
    up = st.file_uploader("Radiograph", type=sandbox.UPLOAD_TYPES)
    if up is None:
        sandbox.forget_results(st.session_state)  # no image: nothing of an earlier one stays
        st.stop()
    source_id = sandbox.image_identity("upload", up.name, up.getvalue())
    sandbox.forget_results(st.session_state, unless=source_id)
    try:
        image = sandbox.load_upload(up.name, up.getvalue())
    except CfviewerError as exc:
        st.error(str(exc))  # names the user's file only, never the server's temporary path
        st.stop()

chk = sandbox.domain_check(bundle, image, what="case" if src.startswith("A case") else "uploaded image")
(st.warning if chk.warning else st.caption)(chk.message)

arm_methods = [m for a in ov.arms for m in a["methods"]]
c1, c2, c3 = st.columns([1, 2, 1])
target = c1.selectbox("Pathology to explain", bundle.pathologies,
                      index=list(bundle.pathologies).index(default_target) if default_target in bundle.pathologies else 0)
names = c2.multiselect("Explainers", list_explainers(), default=list(dict.fromkeys(arm_methods)))
opacity = c3.slider("Overlay opacity", 0.0, 1.0, 0.6, step=0.05)
if not names:
    st.info("Choose at least one explainer.")
    st.stop()
if st.button("Run", type="primary", icon=":material/play_arrow:"):
    with st.spinner(f"Running {len(names)} explainer(s) on {bundle.device} ..."):
        results = sandbox.run_explainers(bundle, image, target, names, opacity=opacity)
    sandbox.keep_results(st.session_state, source_id, results)
results = sandbox.results_for(st.session_state, source_id)  # another image's results are not shown
if results:
    st.dataframe(sandbox.timing_table(results), hide_index=True, width="stretch")
    tiles = [(r.name, r.overlay_png) for r in results if r.ok] + \
            [(f"{r.name}: animation", r.gif) for r in results if r.ok and r.gif]
    for row in range(0, len(tiles), 4):
        cols = st.columns(4)
        for col, (title, data) in zip(cols, tiles[row:row + 4]):
            col.image(data, caption=title, width="stretch")
    for r in results:
        if not r.ok:
            st.error(f"{r.name}: {r.error}")
