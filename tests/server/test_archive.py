"""server.archive: remove.bg's zip of color.jpg and alpha.png."""

from __future__ import annotations

import io
import zipfile

import numpy as np

from server.archive import MEDIA_TYPE, split, zip_of


def test_the_zip_holds_the_two_members_stored() -> None:
    data = zip_of(b"jpeg bytes", b"png bytes")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["color.jpg", "alpha.png"]
        assert archive.read("color.jpg") == b"jpeg bytes"
        assert archive.read("alpha.png") == b"png bytes"
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
        assert archive.testzip() is None
    assert MEDIA_TYPE == "application/zip"


def test_the_same_members_give_the_same_bytes() -> None:
    # A fixed timestamp: caches and tests can compare archives.
    assert zip_of(b"a", b"b") == zip_of(b"a", b"b")


def test_split_gives_contiguous_planes() -> None:
    rgba = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    colour, alpha = split(rgba)
    assert colour.flags.c_contiguous and alpha.flags.c_contiguous
    assert (colour == rgba[..., :3]).all() and (alpha == rgba[..., 3]).all()
