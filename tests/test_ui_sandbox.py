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
    level = 2048.0 / 65535  # one 16-bit grey level in [-1024, 1024]
    # Every one of the 65,536 levels, written by Pillow (not by cfviewer): each must come back
    # as exactly its own level, q / 65535 * 2048 - 1024 (to float32 rounding).
    q = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    buf = io.BytesIO()
    Image.fromarray(q).save(buf, format="PNG")
    out = sandbox.load_upload("levels.png", buf.getvalue())
    assert out.shape == (256, 256) and out.dtype == np.float32
    np.testing.assert_array_equal(np.rint((out.astype(np.float64) + 1024) / level), q)
    np.testing.assert_allclose(out, q * level - 1024, rtol=0, atol=1e-4)
    # cfviewer's own writer: the round trip is off by at most half a level (its quantisation).
    img = np.linspace(-1024, 1024, 32 * 32, dtype=np.float32).reshape(32, 32)
    png = imaging.write_png16(tmp_path / "a.png", img).read_bytes()
    out = sandbox.load_upload("chest.PNG", png)
    assert out.shape == (32, 32)
    np.testing.assert_allclose(out, img, rtol=0, atol=level / 2 + 1e-4)
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


def test_an_upload_error_names_the_users_file_not_the_servers_temporary_path(monkeypatch):
    from cfviewer import imaging as imaging_mod

    def broken(path, *a, **k):  # a reader library that puts the path in its message
        raise ValueError(f"cannot parse {path}: truncated")

    monkeypatch.setattr(imaging_mod, "load", broken)
    with pytest.raises(ImageLoadError) as err:
        sandbox.load_upload("/home/me/scan 1.dcm", b"DICM?")
    msg = str(err.value)
    assert "scan 1.dcm" in msg and "cfviewer-upload-" not in msg and "/tmp" not in msg
    assert "/home/me" not in msg  # the name only, whatever the browser sent


def test_results_belong_to_one_image_and_a_different_file_clears_them():
    state: dict = {}
    a = sandbox.image_identity("upload", "a.png", b"one")
    b = sandbox.image_identity("upload", "a.png", b"two")  # same name, different file
    assert a != b and sandbox.image_identity("case", "c1") != sandbox.image_identity("case", "c2")
    sandbox.keep_results(state, a, ["result of a"])
    assert sandbox.results_for(state, a) == ["result of a"]
    assert sandbox.results_for(state, b) is None  # never shown under another image
    sandbox.forget_results(state, unless=a)
    assert sandbox.results_for(state, a) == ["result of a"]
    sandbox.forget_results(state, unless=b)
    assert sandbox.RESULTS_KEY not in state
