"""Export: long-format answers (CSV, Parquet), the study configuration (JSON) and the SHA-256
manifest, as downloads (the same files as `cfviewer study export`)."""

import streamlit as st

from cfviewer.errors import CfviewerError
from cfviewer.ui import research, shell

s, name = shell.researcher_sidebar()
shell.require_study(s, name)
st.title("Export")
sim = st.toggle("Include simulated readers' answers", value=False,
                help="Simulated answers are flagged in the 'simulated' column either way.")
try:
    bundle = research.export_files(s.db, name, include_simulated=sim)
except CfviewerError as exc:
    st.error(str(exc))
    st.stop()
st.caption(f"{bundle.n_rows} rows: one per reader x case x arm x question (the current answer; edits are in "
           "the database's history).")
labels = {"responses.csv": ("Answers (CSV)", "text/csv"),
          "responses.parquet": ("Answers (Parquet)", "application/octet-stream"),
          "study.json": ("Study configuration (JSON)", "application/json"),
          "MANIFEST.sha256": ("SHA-256 manifest", "text/plain"),
          "manifest.json": ("SHA-256 manifest (JSON)", "application/json")}
cols = st.columns(3)
for i, (fname, data) in enumerate(bundle.files.items()):
    label, mime = labels.get(fname, (fname, "application/octet-stream"))
    cols[i % 3].download_button(f"{label}", data, file_name=f"{name}_{fname}", mime=mime, key=f"dl_{fname}",
                                icon=":material/download:", width="stretch")
st.download_button("Everything as one ZIP", bundle.zip_bytes(), file_name=f"{name}_export.zip",
                   mime="application/zip", type="primary", icon=":material/folder_zip:", key="dl_zip")
art = research.artifact_manifest(research.overview(s.db, name).root)
if art:
    st.download_button("Precomputed files manifest (SHA-256)", art, file_name=f"{name}_artifacts_manifest.json",
                       mime="application/json", key="dl_art")
