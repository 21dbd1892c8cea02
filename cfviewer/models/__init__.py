"""Models: the multi-label classifier, the Latent Shift autoencoder and the Bundle that
carries both with their metadata (see docs/ARCHITECTURE.md, "cfviewer.models")."""

from cfviewer.models.autoencoder import ResNetAE, elastic_loss
from cfviewer.models.bundle import Bundle, random_bundle
from cfviewer.models.classifier import Classifier, count_parameters

__all__ = ["Bundle", "Classifier", "ResNetAE", "count_parameters", "elastic_loss", "random_bundle"]
