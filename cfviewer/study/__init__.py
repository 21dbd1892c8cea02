"""The study engine: storage, cohort, reading design, precompute, responses, export."""
