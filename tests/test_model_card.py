"""Model card sections rendered from what training recorded beside a bundle."""

from __future__ import annotations

import json

def test_inpainting_section_reads_the_models_beside_the_bundle(tmp_path):
    from cfviewer.models.model_card import inpainting_section

    assert inpainting_section(tmp_path) == [] and inpainting_section(None) == []
    per = {"Mass": {"auc_original": 0.9, "auc_healthy_inpainted": 0.89, "auc_pathology_inpainted": 0.4,
                    "share_below_threshold": 0.75, "mean_prediction_drop": 0.5}}
    (tmp_path / "inpainter.json").write_text(json.dumps({"validation": {"marginalisation": {
        "n_images": 20, "healthy_hole_share": 0.25, "per_pathology": per, "mean_auc_original": 0.9,
        "mean_auc_healthy_inpainted": 0.89, "mean_auc_pathology_inpainted": 0.4,
        "mean_share_below_threshold": 0.75, "mean_prediction_drop": 0.5,
        "hole_error_healthy": {"hole_mae": 100.0}}}}))
    text = "\n".join(inpainting_section(tmp_path))
    assert "| Mass | 0.900 | 0.890 | 0.400 | 0.75 | 0.500 |" in text and "MAE 100.0 of 2048" in text
    assert "Mask network" not in text
    (tmp_path / "masknet.json").write_text(json.dumps({"validation": {"pairs": 10, "success": 0.3, "mean_area": 0.05,
                                                                       "mean_p": 0.4, "loss": 1.2}}))
    assert "| 10 | 0.30 | 0.050 | 0.400 | 1.200 |" in "\n".join(inpainting_section(tmp_path))
    (tmp_path / "masknet.json").write_text("not json")   # an unreadable file is left out, not a crash
    assert "Mask network" not in "\n".join(inpainting_section(tmp_path))
