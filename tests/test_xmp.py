"""catalogcap-xmp: what we write, exiftool reads back exactly; originals stay untouched; pixels never change."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from catalogcap.cli import cli
from tests.conftest import make_image
from tests.plugin_support import add_image, add_reviewed

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None,
                                reason="exiftool missing: apt-get install libimage-exiftool-perl")
ALT = "XMP-iptcCore:AltTextAccessibility"
EXT = "XMP-iptcCore:ExtDescrAccessibility"
DC = "XMP-dc:Description"
TRICKY = '-Red "crew" shirt, 100% cotton – size M ✓ 🙂'
FORMATS = {"red.jpg": "JPEG", "blue.png": "PNG", "green.tiff": "TIFF", "yellow.webp": "WEBP"}


def export(*args: str, code: int = 0) -> dict:
    result = CliRunner().invoke(cli, ["export", "xmp", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def exiftool_read(path: Path, *tags: str) -> dict[str, str]:
    """What exiftool itself says (not our module): values kept as text, exactly."""
    out = subprocess.run(["exiftool", "-json", "-G1", *[f"-{t}" for t in tags], str(path)], check=True,
                         capture_output=True).stdout
    record = json.loads(out, parse_float=str, parse_int=str)[0]
    record.pop("SourceFile")
    return record


def pixels(path: Path) -> list[bytes]:
    with Image.open(path) as image:
        frames = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            frames.append(image.mode.encode() + bytes(str(image.size), "ascii") + image.tobytes())
        return frames


def digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture
def catalog(engine, tmp_path: Path) -> Path:
    """One reviewed image per embeddable format, in a tree with a subfolder."""
    folder = tmp_path / "catalog"
    for index, (name, fmt) in enumerate(FORMATS.items()):
        path = make_image(folder / ("sub" if fmt == "TIFF" else "") / name, name.split(".")[0], fmt=fmt)
        add_reviewed(engine, path, f"{TRICKY} #{index}", f"A {name.split('.')[0]} product.\nOn white, line 2.")
    return folder


def test_sidecars_read_back_exactly_and_never_touch_the_originals(home: Path, catalog: Path) -> None:
    images = sorted(p for p in catalog.rglob("*") if p.is_file())
    before = {p: digest(p) for p in images}
    report = export()
    assert report["written"] == 4 and report["errors"] == []
    for index, (name, _fmt) in enumerate(FORMATS.items()):
        image = next(p for p in images if p.name == name)
        sidecar = image.with_suffix(".xmp")
        assert sidecar.is_file(), f"no sidecar for {image}"
        found = exiftool_read(sidecar, ALT, EXT, DC)
        assert found == {ALT: f"{TRICKY} #{index}", EXT: f"A {image.stem} product.\nOn white, line 2.",
                         DC: f"A {image.stem} product.\nOn white, line 2."}
    assert {p: digest(p) for p in images} == before
    assert not [p for p in catalog.rglob(".*")], "temporary files left behind"


def test_the_issue_command_reads_back_with_plain_exiftool(home: Path, engine, tmp_path: Path) -> None:
    image = make_image(tmp_path / "shop" / "mug.jpg", "blue")
    ids = add_image(engine, image, {"alt_text": "Blue mug", "description": "A blue ceramic mug."})
    CliRunner().invoke(cli, ["captions", "accept", str(ids["alt_text"])], catch_exceptions=False)
    result = CliRunner().invoke(cli, ["export", "--format", "xmp"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = subprocess.run(["exiftool", "-s3", "-XMP-iptcCore:AltTextAccessibility", str(image.with_suffix(".xmp"))],
                         capture_output=True, text=True, check=True).stdout
    assert out == "Blue mug\n"
    assert not exiftool_read(image.with_suffix(".xmp"), DC), "a pending description must not be exported"


def test_an_existing_sidecar_keeps_what_others_wrote(home: Path, engine, tmp_path: Path) -> None:
    image = make_image(tmp_path / "c" / "hat.jpg")
    sidecar = image.with_suffix(".xmp")
    subprocess.run(["exiftool", "-q", "-XMP-dc:Creator=Ana Photographer", "-XMP-xmp:Rating=4",
                    f"-{ALT}=old text", str(sidecar)], check=True)
    add_reviewed(engine, image, "Straw sun hat")
    report = export()  # "old text" is alt text a person wrote: kept (test_human_alt_text_... has more)
    assert report["kept_human"] == 1
    assert exiftool_read(sidecar, ALT)[ALT] == "old text"
    export("--overwrite-human")
    found = exiftool_read(sidecar, ALT, "XMP-dc:Creator", "XMP-xmp:Rating")
    assert found == {ALT: "Straw sun hat", "XMP-dc:Creator": "Ana Photographer", "XMP-xmp:Rating": "4"}


@pytest.mark.parametrize("name", list(FORMATS))
def test_embedding_keeps_every_pixel_and_reads_back(home: Path, catalog: Path, name: str) -> None:
    image = next(catalog.rglob(name))
    os.chmod(image, 0o640)
    before = pixels(image)
    others = {p: digest(p) for p in catalog.rglob("*") if p.is_file() and p != image}
    report = export("--folder", str(image.parent), "-o", "mode=embed")
    assert report["errors"] == [] and report["written"] >= 1
    index = list(FORMATS).index(name)
    assert exiftool_read(image, ALT)[ALT] == f"{TRICKY} #{index}"
    assert exiftool_read(image, EXT)[EXT].endswith("line 2.")
    assert pixels(image) == before
    assert image.stat().st_mode & 0o777 == 0o640
    assert not image.with_suffix(".xmp").exists()
    changed = [p for p, d in others.items() if digest(p) != d and not p.is_relative_to(image.parent)]
    assert changed == [] and not list(catalog.rglob(".*"))


def test_embedding_into_copies_under_out_mirrors_the_tree(home: Path, catalog: Path, tmp_path: Path) -> None:
    before = {p: digest(p) for p in catalog.rglob("*") if p.is_file()}
    out = tmp_path / "web"
    report = export("-o", "mode=embed", "--out", str(out))
    assert report["written"] == 4, report
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "blue.png", "red.jpg", "sub/green.tiff", "yellow.webp"]
    for copy in out.rglob("*.*"):
        assert exiftool_read(copy, ALT)[ALT].startswith(TRICKY)
        assert pixels(copy) == pixels(next(catalog.rglob(copy.name)))
    assert {p: digest(p) for p in catalog.rglob("*") if p.is_file()} == before


def test_sidecars_under_out_with_a_root_and_no_escape(home: Path, catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "meta"
    report = export("--out", str(out), "-o", f"root={catalog.parent}")
    assert report["written"] == 4
    assert (out / "catalog" / "sub" / "green.xmp").is_file()
    (out / "catalog" / "sub").rename(out / "moved")
    (out / "catalog" / "sub").symlink_to(tmp_path)  # a planted link must not lead outside
    report = export("--out", str(out), "-o", f"root={catalog.parent}", code=1)
    assert [e["path"] for e in report["errors"]] == [str(catalog / "sub" / "green.tiff")]
    assert "outside" in report["errors"][0]["reason"] and not (tmp_path / "green.xmp").exists()
    report = export("--out", str(out), "-o", f"root={catalog / 'sub'}", code=1)
    assert len(report["errors"]) == 3 and all("not under root" in e["reason"] for e in report["errors"])


def test_problems_name_the_file_and_the_reason(home: Path, engine, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    changed = make_image(folder / "changed.jpg", "red")
    add_reviewed(engine, changed, "Red block")
    make_image(changed, "black")  # new bytes after captioning
    gone = make_image(folder / "gone.png", "blue")
    add_reviewed(engine, gone, "Blue block")
    gone.unlink()
    gif = make_image(folder / "anim.gif", "green", fmt="GIF")
    add_reviewed(engine, gif, "Green block")
    twin_jpg = make_image(folder / "twin.jpg", "pink")
    twin_png = make_image(folder / "twin.png", "navy")
    add_reviewed(engine, twin_jpg, "Pink twin")
    add_reviewed(engine, twin_png, "Navy twin")
    report = export(code=1)
    reasons = {Path(e["path"]).name: e["reason"] for e in report["errors"]}
    assert "bytes changed since it was captioned" in reasons["changed.jpg"]
    assert "not found" in reasons["gone.png"]
    assert "sidecar_name=fullname" in reasons["twin.png"]
    assert exiftool_read(folder / "anim.xmp", ALT)[ALT] == "Green block"  # any format gets a sidecar
    export("-o", "sidecar_name=fullname", code=1)
    assert (folder / "twin.jpg.xmp").is_file() and (folder / "twin.png.xmp").is_file()
    report = export("-o", "mode=embed", code=1)
    reasons = {Path(e["path"]).name: e["reason"] for e in report["errors"]}
    assert "cannot embed XMP in .gif" in reasons["anim.gif"]
    assert report["written"] == 2  # the twins, embedded


def test_a_language_tag_is_written_beside_x_default(home: Path, engine, tmp_path: Path) -> None:
    image = make_image(tmp_path / "c" / "cap.jpg")
    add_reviewed(engine, image, "Red cap")
    export("-o", "language=en-US")
    found = exiftool_read(image.with_suffix(".xmp"), ALT, f"{ALT}-en-US")
    assert found == {ALT: "Red cap", f"{ALT}-en-US": "Red cap"}
    result = CliRunner().invoke(cli, ["export", "xmp", "-o", "language=english please"])
    assert result.exit_code == 1 and "plugin_config.xmp.language" in result.output


def test_missing_exiftool_says_how_to_install_it(home: Path, engine, tmp_path: Path) -> None:
    add_reviewed(engine, make_image(tmp_path / "c" / "a.jpg"), "A")
    result = CliRunner().invoke(cli, ["export", "xmp", "-o", "exiftool=/nonexistent/exiftool"])
    assert result.exit_code == 1 and "exiftool not found" in result.output and "apt-get install" in result.output


def test_the_pixel_gate_refuses_a_copy_whose_pixels_differ(tmp_path: Path) -> None:
    from catalogcap_xmp import writer

    image = make_image(tmp_path / "p.png", "red", fmt="PNG")
    item = writer.Item(image, hashlib.sha256(image.read_bytes()).hexdigest())
    writer.set_text(item, "alt_text", "Red", ["x-default"])
    item.target = image
    writer.stage(item, "embed")
    assert item.temp is not None and item.temp.name.startswith(".p.catalogcap-")
    writer.verify(item, item.tags(), "embed")  # identical copy: accepted
    make_image(item.temp, "orange", fmt="PNG")
    with pytest.raises(writer.SkipItem, match="changed its pixels"):
        writer.verify(item, item.tags(), "embed")
    with pytest.raises(writer.SkipItem, match="reads back as"):
        writer.verify(item, {}, "embed")
    writer.cleanup(item)
    assert os.listdir(tmp_path) == ["p.png"]
