"""cfviewer.ui.sandbox: uploads and live explainer runs (one failure does not stop the rest)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cfviewer import imaging
from cfviewer.errors import CfviewerError, ImageLoadError, UnknownPathologyError
from cfviewer.ui import sandbox


def test_load_upload_reads_png16_and_dicom(tmp_path):
    img = np.linspace(-1024, 1024, 32 * 32, dtype=np.float32).reshape(32, 32)
    png = imaging.write_png16(tmp_path / "a.png", img).read_bytes()
    out = sandbox.load_upload("chest.PNG", png)
    assert out.shape == (32, 32) and np.allclose(out, img, atol=1.0)
    dcm = imaging.write_dicom(tmp_path / "a.dcm", img, patient_id="P1")
    assert sandbox.load_upload("x.dcm", dcm.read_bytes()).shape == (32, 32)


@pytest.mark.parametrize("data,match", [(b"", "empty"), (b"not an image at all", "scan.png")])
def test_bad_uploads_name_the_file(data, match):
    with pytest.raises(ImageLoadError, match=match) as err:
        sandbox.load_upload("scan.png", data)
    assert "scan.png" in str(err.value)


def test_run_explainers_side_by_side_with_timings():
    from cfviewer.models.bundle import random_bundle

    bundle = random_bundle(32, seed=0, autoencoder=False)
    img = np.random.default_rng(0).uniform(-1024, 1024, (48, 48)).astype(np.float32)
    res = sandbox.run_explainers(bundle, img, "Effusion", ["gradient", "latentshift-max", "no-such"],
                                 tile=64, gif_size=64)
    assert [r.name for r in res] == ["gradient", "latentshift-max", "no-such"]
    ok, no_ae, unknown = res
    assert ok.ok and ok.seconds > 0 and 0 <= ok.pred_original <= 1
    with Image.open(io.BytesIO(ok.overlay_png)) as im:
        assert im.size == (64, 64)
    assert not no_ae.ok and "autoencoder" in no_ae.error  # the bundle has none: said plainly
    assert not unknown.ok and "unknown explainer" in unknown.error
    table = sandbox.timing_table(res)
    assert list(table["status"])[0] == "ok" and len(table) == 3
    with pytest.raises(UnknownPathologyError):
        sandbox.run_explainers(bundle, img, "Fracture", ["gradient"])
    assert issubclass(UnknownPathologyError, CfviewerError)
