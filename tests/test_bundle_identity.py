"""The model's name in a study is the Bundle's (cfviewer.models.bundle.bundle_identity,
Bundle.identity); files are named by cfviewer.files.sha256_file."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from cfviewer.files import sha256_file
from cfviewer.models import random_bundle
from cfviewer.models.bundle import Bundle, bundle_identity

ROOT = Path(__file__).resolve().parents[1]


def test_sha256_file_is_the_digest_of_the_bytes(tmp_path):
    from cfviewer.study import cohort

    f = tmp_path / "x.bin"
    f.write_bytes(bytes(range(256)) * 9000)  # more than one 1 MiB block
    assert sha256_file(f) == sha256_file(f, chunk=7) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert cohort.sha256_file is sha256_file  # re-exported for its callers


def test_identity_of_a_folder_hashes_its_files_and_loads_nothing(tmp_path):
    d = tmp_path / "mybundle"
    d.mkdir()
    (d / "b.txt").write_text("not a model")
    (d / "a.txt").write_text("nor this")
    (d / "sub").mkdir()  # folders are not part of it
    h = hashlib.sha256()
    for name in ("a.txt", "b.txt"):
        h.update(name.encode())
        h.update(hashlib.sha256((d / name).read_bytes()).hexdigest().encode())
    assert bundle_identity(d) == bundle_identity(str(d)) == f"mybundle@{h.hexdigest()[:12]}"
    (d / "a.txt").write_text("changed")
    assert bundle_identity(d) != f"mybundle@{h.hexdigest()[:12]}"


def test_bundle_identity_of_loaded_and_in_memory_bundles(tmp_path):
    b = random_bundle(resolution=32, seed=4)
    assert b.directory is None and b.identity == "in-memory:random_bundle:4"
    assert bundle_identity(None, b) == b.identity
    d = b.save(tmp_path / "demo")
    loaded = Bundle.load(d, device="cpu")
    assert loaded.directory == d and loaded.identity == bundle_identity(d)
    assert loaded.identity.startswith("demo@")
    assert bundle_identity(None, loaded) == "in-memory:random_bundle:4"  # the old form, kept as it was


def test_cohort_reexports_it_without_importing_torch():
    from cfviewer.study import cohort

    assert cohort.bundle_identity is bundle_identity
    code = ("import sys; from cfviewer.study import cohort; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
