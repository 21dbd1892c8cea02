"""The reference reader study (Cohen et al., Gifsplanation): its two arms and its two questions.

The one definition: `cfviewer study create`, the Study setup page, the demo study, the sample
studies of the tests and the simulated answers all take them from here. Plain data, no imports:
the reader's process may load it.
"""

from __future__ import annotations

from typing import Any

REFERENCE_ARMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Method A", ("gradient", "guided_backprop", "integrated_gradients")),
    ("Method B", ("latentshift-max",)),
)
"""(display name, explainers) of each arm: three captum maps vs Latent Shift + animation."""

ARM_A_METHODS: tuple[str, ...] = REFERENCE_ARMS[0][1]
ARM_B_METHODS: tuple[str, ...] = REFERENCE_ARMS[1][1]


def reference_arms() -> list[tuple[str, list[str]]]:
    """REFERENCE_ARMS as fresh lists (safe to change), the form `setup.create_study` takes."""
    return [(name, list(methods)) for name, methods in REFERENCE_ARMS]


DEFAULT_QUESTIONS: tuple[dict[str, Any], ...] = (
    {
        "key": "confidence",
        "text": "How confident are you in the model's prediction?",
        "anchors": [
            "1 - Not at all confident",
            "2 - Slightly confident",
            "3 - Moderately confident",
            "4 - Very confident",
            "5 - Completely confident",
        ],
    },
    {
        "key": "correct_feature",
        "text": "Is the model looking at the correct feature?",
        "anchors": [
            "1 - Definitely not",
            "2 - Probably not",
            "3 - Unsure",
            "4 - Probably yes",
            "5 - Definitely yes",
        ],
    },
)
"""The two questions of the reference reader study, 5-point scale."""

QUESTION_KEYS: tuple[str, ...] = tuple(q["key"] for q in DEFAULT_QUESTIONS)
QUESTION_TEXTS: tuple[str, ...] = tuple(q["text"] for q in DEFAULT_QUESTIONS)
