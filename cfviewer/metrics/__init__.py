"""Explanation metrics: pure functions on numpy arrays (plus the randomisation test, which
re-runs an explainer on copies of a bundle). Each module cites the paper it follows.

- :mod:`.localization`: top-p IoU (Latent Shift), IoU at fixed percentiles, Hausdorff
  distance, weak localisation (Fong & Vedaldi), pointing game, AUC_loc (Charachon et al.).
- :mod:`.faithfulness`: deletion curves and AOPC (Samek et al.).
- :mod:`.sanity`: cascading model-parameter randomisation (Adebayo et al.).
- :mod:`.class_sensitivity`: class sensitivity of a 2 x 2 grid of separately explained images
  (one true positive, three true negatives; Attri-Net, Sun et al.).
- :mod:`.confounders`: share of attribution mass on a confounder mask (chest tube).
"""

from cfviewer.metrics._checks import MetricInputError
from cfviewer.metrics.class_sensitivity import GRID_IMAGES, ClassSensitivity, class_sensitivity_score
from cfviewer.metrics.confounders import confounder_mass, confounder_mass_ratio, positive_mass_share
from cfviewer.metrics.faithfulness import (
    DeletionCurves,
    aopc,
    deletion_curves,
    make_baseline,
    random_map,
)
from cfviewer.metrics.localization import (
    PERCENTILES,
    WeakLocalization,
    auc_loc,
    binarize_top_k,
    binarize_top_share,
    hausdorff_distance,
    iou,
    iou_at_percentiles,
    iou_top_p,
    localization_scores,
    pointing_game,
    weak_localization,
)
from cfviewer.metrics.sanity import (
    RandomizationCurve,
    cascading_randomization,
    layer_groups,
    rank_correlation,
)

__all__ = [
    "MetricInputError",
    "GRID_IMAGES", "ClassSensitivity", "class_sensitivity_score",
    "confounder_mass", "confounder_mass_ratio", "positive_mass_share",
    "DeletionCurves", "aopc", "deletion_curves", "make_baseline", "random_map",
    "PERCENTILES", "WeakLocalization", "auc_loc", "binarize_top_k", "binarize_top_share",
    "hausdorff_distance", "iou", "iou_at_percentiles", "iou_top_p", "localization_scores",
    "pointing_game", "weak_localization",
    "RandomizationCurve", "cascading_randomization", "layer_groups", "rank_correlation",
]
