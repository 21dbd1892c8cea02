"""cfviewer: reader studies for explanations of chest X-ray classifiers."""

__version__ = "0.1.0"

PATHOLOGIES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Lung Opacity",
    "Mass",
    "Pneumothorax",
)
"""The six pathologies of the reference reader study (Cohen et al., Gifsplanation)."""
