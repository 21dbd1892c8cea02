"""Study setup: create a study (bundle, pathologies, arms from the explainer registry,
questions, washout), import a folder of cases, sample the cohort, add readers and get their links."""

import streamlit as st

from cfviewer import PATHOLOGIES
from cfviewer.errors import CfviewerError, ImportValidationError
from cfviewer.study.reference import DEFAULT_QUESTIONS, REFERENCE_ARMS
from cfviewer.ui import planning, research, resources, shell

s, name = shell.researcher_sidebar()
st.title("Study setup")


def create_form() -> None:
    from cfviewer import paths
    from cfviewer.explain import list_explainers

    explainers = list_explainers()
    st.subheader("Create a study")
    with st.form("cfv_create"):
        c1, c2, c3 = st.columns([1, 2, 1])
        new_name = c1.text_input("Study name", placeholder="e.g. effusion-2026")
        root = c2.text_input("Study folder", value=str(s.ctx.study_dir),
                             help="Artifacts and exports are written here; case paths are stored relative to it.")
        seed = c3.number_input("Seed", value=0, step=1, help="Cohort draw and reading orders.")
        bundle = st.text_input("Model bundle folder", value=str(paths.demo_bundle_dir()),
                               help="A folder written by `cfviewer train` (bundle.json + weights), or by "
                                    "`cfviewer train-attrinet` for the inherently interpretable Attri-Net "
                                    f"({paths.demo_attrinet_dir()}: explain it with `attrinet`); absolute, or "
                                    "relative to the study folder.")
        pathologies = st.multiselect("Pathologies", list(PATHOLOGIES), default=list(PATHOLOGIES))
        st.markdown("**Arms** (readers see only the display name)")
        a1, a2 = st.columns(2)
        (ref_a, ref_a_methods), (ref_b, ref_b_methods) = REFERENCE_ARMS
        arm_a_name = a1.text_input("Arm 1 display name", value=ref_a)
        arm_a = a1.multiselect("Arm 1 explainers", explainers,
                               default=[m for m in ref_a_methods if m in explainers])
        arm_b_name = a2.text_input("Arm 2 display name", value=ref_b)
        arm_b = a2.multiselect("Arm 2 explainers", explainers,
                               default=[m for m in ref_b_methods if m in explainers])
        st.markdown("**Questions** (5-point Likert; one anchor label per line, for 1 to 5)")
        questions = []
        for i, q in enumerate(DEFAULT_QUESTIONS):
            q1, q2 = st.columns([2, 1])
            text = q1.text_input(f"Question {i + 1}", value=q["text"], key=f"cfv_qtext_{i}")
            anchors = q2.text_area(f"Anchors of question {i + 1}", value="\n".join(q["anchors"]), height=150,
                                   key=f"cfv_qanch_{i}")
            if text.strip():
                questions.append({"key": q["key"], "text": text.strip(),
                                  "anchors": research.parse_anchor_lines(anchors)})
        w1, w2 = st.columns(2)
        spa = w1.number_input("Sessions per arm", min_value=1, value=1, step=1,
                              help="Washout: each arm is read in its own session(s), so the two reads of "
                                   "a case are in different sessions.")
        gap = w2.number_input("Minimum hours between sessions", min_value=0.0, value=0.0, step=1.0)
        submitted = st.form_submit_button("Create study", type="primary")
    if submitted:
        arms = [(arm_a_name, arm_a)] + ([(arm_b_name, arm_b)] if arm_b else [])
        try:
            db = resources.database(s.ctx.db_url)
            research.create_study(db, new_name.strip(), root, seed=int(seed), bundle=bundle.strip() or None,
                                  pathologies=pathologies, arms=arms, questions=questions,
                                  sessions_per_arm=int(spa), min_gap_hours=float(gap))
        except CfviewerError as exc:
            st.error(f"The study was not created: {exc}")
            return
        st.session_state[shell.STUDY_KEY] = new_name.strip()
        st.success(f"Study {new_name!r} created.")
        st.rerun()


if s.db is None or not name:
    if s.db is None:
        st.info(s.ctx.empty_state_message() + " Or create a new study below.", icon=":material/folder_off:")
    create_form()
    st.stop()

ov = research.overview(s.db, name)
m = st.columns(6)
for col, (label, value) in zip(m, [("Cases", ov.n_cases), ("Cohort", ov.n_cohort), ("Readers", ov.n_readers),
                                   ("Reads", ov.n_assignments), ("Answers", ov.n_answers),
                                   ("Artifacts", ov.artifacts_done)]):
    col.metric(label, value)

with st.expander("Configuration", expanded=False):
    st.json({"name": ov.name, "folder": ov.root, "seed": ov.seed, "config": ov.config, "arms": ov.arms,
             "questions": ov.questions})

st.subheader("1. Import cases")
with st.form("cfv_import"):
    f1, f2, f3 = st.columns([2, 1, 1])
    folder = f1.text_input("Folder with the images", value=str(s.ctx.study_dir / "cases"))
    labels = f2.text_input("Labels CSV", value="labels.csv", help="Relative to the folder, or a full path.")
    boxes = f3.text_input("Boxes CSV (optional)", help="NIH BBox_List_2017 layout.")
    copy = st.checkbox("Copy the files into the study folder", value=False)
    absent = st.multiselect(
        "Pathologies the CSV deliberately has no column for", ov.config.get("pathologies") or PATHOLOGIES,
        help="Their cases are imported as unlabelled (not negative) for these pathologies and enter "
             "neither of their strata. Leave empty: a missing column is refused.")
    go = st.form_submit_button("Import")
if go:
    bar = st.progress(0.0, text="Checking every file ...")
    try:
        rep = research.import_folder(s.db, name, folder, labels, boxes or None, copy,
                                     progress=lambda i, n: bar.progress(i / n, text=f"Checked {i} of {n} files"),
                                     absent_pathologies=absent)
    except ImportValidationError as exc:
        bar.empty()
        st.error(f"Nothing was imported: {len(exc.problems)} problem(s).")
        st.dataframe({"problem": exc.problems}, width="stretch", hide_index=True)
    except CfviewerError as exc:
        bar.empty()
        st.error(str(exc))
    else:
        bar.empty()
        st.success(str(rep))
        if getattr(rep, "domain", None) is not None and rep.domain.warning:
            st.warning(rep.domain.message, icon=":material/warning:")

st.subheader("2. Sample the cohort")
if ov.n_cohort:
    st.caption(f"The cohort holds {ov.n_cohort} cases." + (" Readers are scheduled, so it can no longer change."
                                                             if ov.n_assignments else ""))
with st.form("cfv_sample"):
    c1, c2, c3, c4 = st.columns(4)
    per = c1.number_input("Cases per pathology", min_value=1, value=40, step=1)
    fpf = c2.slider("Share of false positives", 0.0, 1.0, 0.5, step=0.05)
    seed = c3.number_input("Draw seed", value=int(ov.seed), step=1)
    fill = c4.checkbox("Top up a short stratum from the other", value=True)
    replace = st.checkbox("Draw again (replaces the cohort; only before readers are scheduled)",
                          disabled=not ov.n_cohort)
    go = st.form_submit_button("Sample")
if go:
    try:
        from cfviewer.models.bundle import bundle_identity

        bdir = research.resolve_bundle_dir(ov.root, ov.config.get("bundle"))
        bundle = resources.bundle(str(bdir))
        bar = st.progress(0.0, text="Running the model on every case ...")
        rep = research.sample(s.db, name, bundle, bundle_identity(bdir), per_pathology=int(per), fp_fraction=fpf,
                              fill=fill, seed=int(seed), replace=replace,
                              progress=lambda i, n: bar.progress(i / max(n, 1), text=f"Predicted {i} of {n}"))
        bar.empty()
        st.success(f"Cohort: {rep.total} cases.")
        if getattr(rep, "domain", None) is not None and rep.domain.warning:
            st.warning(rep.domain.message, icon=":material/warning:")
        st.dataframe(rep.table(), width="stretch", hide_index=True)
        st.info(research.schedule_all(s.db, name))
    except CfviewerError as exc:
        st.error(f"No cohort was drawn: {exc}")

with st.expander("How many readers and cases? (MRMC power)", icon=":material/calculate:"):
    planning.study_size_panel(s.db, name)

st.subheader("3. Readers")
with st.form("cfv_readers", clear_on_submit=True):
    names = st.text_area("New readers, one name per line", placeholder="Dr. A\nDr. B")
    base = st.text_input("App address for the links", value=ov.config.get("app_url") or "http://localhost:8501/")
    go = st.form_submit_button("Add readers")
if go:
    try:
        links, note = research.add_readers(s.db, name, names.splitlines(), base)
    except CfviewerError as exc:
        st.error(f"No reader was added: {exc}")
    else:
        st.success(note)
        st.warning("Copy these links now: they are shown only once (the database keeps only a hash of each "
                   "token).", icon=":material/key:")
        st.dataframe({"reader": [x.reader for x in links], "link": [x.link for x in links]},
                     width="stretch", hide_index=True)
