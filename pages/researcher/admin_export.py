"""Export: long-format answers (CSV, Parquet), the study configuration (JSON) and the SHA-256
manifest, as downloads (the same files as `cfviewer study export`)."""

import streamlit as st

from cfviewer.errors import CfviewerError
from cfviewer.ui import research, shell

s, name = shell.researcher_sidebar()
shell.require_study(s, name)
st.title("Export")
sim = st.checkbox("Include simulated readers' answers", value=False,
                  help="Left out unless ticked. When included, their rows have simulated = True and study.json / "
                       "manifest.json say simulated_included: true. Never report them.")
try:
    bundle = research.export_files(s.db, name, include_simulated=sim)
except CfviewerError as exc:
    st.error(str(exc))
    st.stop()
if bundle.simulated_answers:
    st.warning(f"**SIMULATED answers included.** {bundle.simulated_answers} of these {bundle.n_rows} rows come from "
               f"{len(bundle.simulated_readers)} simulated reader(s) ({', '.join(bundle.simulated_readers)}); they "
               "are marked in the 'simulated' column and in study.json / manifest.json (simulated_included). "
               "Never report them.", icon=":material/science:")
elif bundle.simulated_excluded:
    st.caption(f"{bundle.simulated_excluded} simulated answer(s) left out (tick the box above to include them, "
               "marked).")
if bundle.n_rows == 0:
    st.info(f"No answers {'from real readers ' if bundle.simulated_excluded else ''}yet in study {name!r}: the "
            "files below hold the study configuration and empty answer tables.", icon=":material/hourglass_empty:")
st.caption(f"{bundle.n_rows} rows: one per reader x case x arm x question (the current answer; edits are in "
           "the database's history).")
tag = "_with_simulated" if bundle.simulated_answers else ""
labels = {"responses.csv": ("Answers (CSV)", "text/csv"),
          "responses.parquet": ("Answers (Parquet)", "application/octet-stream"),
          "study.json": ("Study configuration (JSON)", "application/json"),
          "MANIFEST.sha256": ("SHA-256 manifest", "text/plain"),
          "manifest.json": ("SHA-256 manifest (JSON)", "application/json")}
answer_files = ("responses.csv", "responses.parquet")


def _buttons(fnames) -> None:
    cols = st.columns(3)
    for i, fname in enumerate(fnames):
        label, mime = labels.get(fname, (fname, "application/octet-stream"))
        cols[i % 3].download_button(label, bundle.files[fname], file_name=f"{name}{tag}_{fname}", mime=mime,
                                    key=f"dl_{fname}", icon=":material/download:", width="stretch")


st.subheader("Answers")
_buttons([f for f in bundle.files if f in answer_files])
st.subheader("Study configuration and manifests")
_buttons([f for f in bundle.files if f not in answer_files])  # research.export_files: manifests last
st.download_button("Everything as one ZIP", bundle.zip_bytes(), file_name=f"{name}{tag}_export.zip",
                   mime="application/zip", type="primary", icon=":material/folder_zip:", key="dl_zip")
art = research.artifact_manifest(research.overview(s.db, name).root)
if art:
    st.download_button("Precomputed files manifest (SHA-256)", art, file_name=f"{name}_artifacts_manifest.json",
                       mime="application/json", key="dl_art")
