"""Reading progress per reader (researchers only)."""

import streamlit as st

from cfviewer.ui import research, shell

s, name = shell.researcher_sidebar()
shell.require_study(s, name)
st.title("Reader progress")
table = research.reader_progress(s.db, name)
if table.empty:
    st.info("No readers yet: add them on Study setup.")
    st.stop()
done, total = int(table["done"].sum()), int(table["total"].sum())
c1, c2, c3 = st.columns(3)
c1.metric("Readers", len(table))
c2.metric("Reads done", f"{done} / {total}")
c3.metric("Finished readers", int((table["done"] == table["total"]).sum()))
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"percent": st.column_config.ProgressColumn("progress", min_value=0, max_value=100,
                                                                        format="%.0f%%")})
links = research.demo_links(s.ctx.study_dir) if s.ctx.is_demo else {}
if links:
    with st.expander("Demo reader links (only the demo keeps its tokens)"):
        for reader, link in links.items():
            st.markdown(f"- **{reader}**: [{link}]({link})")
