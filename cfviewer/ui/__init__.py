"""The web app's logic (pages/ only draw): study context, access control, cached resources,
image rendering for the viewer, the reader flow and researcher helpers
(the next-case timing script is benchmarks/ui_next_case.py).

Modules that import streamlit: `resources`, `components`. Everything else is plain Python and
tested without a Streamlit runtime.
"""
