"""Write the seed corpus of the image-input fuzzer (``fuzz/fuzz_imageio.py``).

Usage::

    python fuzz/make_corpus.py OUT_DIR [--small] [--force]

The seeds (nothing here is committed; ``fuzz/work/`` is git-ignored):

- real radiographs from pydicom-data: RG1 and RG3 (CR chest/skeletal) in every transfer syntax
  the package has them in (Explicit VR Little Endian, JPEG 2000 lossless and lossy), as shipped;
  ``--small`` leaves these 0.2-7 MB files out (fast runs, the self-test);
- the same radiographs cropped to their central 320 x 320 pixels, re-encoded in every transfer
  syntax the app decodes (real image content at a size that fuzzes fast);
- real compressed streams of other pydicom-data files (JPEG lossless, RLE, JPEG-LS, JPEG 2000,
  big endian, implicit VR) relabelled as CR chest images, so that they pass the radiograph rules
  and reach the decoders instead of being refused at the header;
- small synthetic DICOMs (256 x 256, 8/12/16-bit, signed, MONOCHROME1, rescaled, windowed, without
  preamble) in every transfer syntax: uncompressed, deflated, big endian, RLE, JPEG baseline,
  JPEG lossless (process 14 and SV1, by GDCM), JPEG-LS lossless and near-lossless, JPEG 2000
  lossless and lossy, HTJ2K when the encoder has it;
- synthetic PNG (8/16-bit grey, RGB, palette), JPEG (grey, colour, progressive) and TIFF (8/16-bit,
  float, compressed) images.

Each seed is named ``<kind>-<name>``; the fuzzer reads them by content, never by name.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

REAL_RADIOGRAPHS = [
    f"RG{n}_{kind}.dcm" for n in (1, 3) for kind in ("UNCR", "UNCI", "J2KR", "J2KI")
]
# Other pydicom-data files whose compressed streams are worth decoding (relabelled as CR chest).
RELABELLED = [
    "JPEG-LL.dcm",  # JPEG lossless process 14, 16-bit
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG lossless SV1, 8-bit
    "OBXXXX1A_rle.dcm",  # RLE, 8-bit
    "OBXXXX1A_expb.dcm",  # explicit VR big endian
    "gdcm-US-ALOKA-16.dcm",  # implicit VR little endian, 16-bit
    "693_J2KR.dcm",  # JPEG 2000 lossless, signed 16-bit CT
    "MR2_J2KI.dcm",  # JPEG 2000 lossy, 12-bit
    "emri_small_jpeg_ls_lossless.dcm",  # JPEG-LS (64 x 64: refused as too small, header paths)
    "emri_small_jpeg_2k_lossless_too_short.dcm",  # a J2K stream cut short
    "bad_sequence.dcm",  # a damaged sequence, JPEG lossless
]
SIDE = 256
CROP = 320


def _testdata(name: str) -> Path | None:
    from pydicom.data import get_testdata_file

    try:
        found = get_testdata_file(name, download=False)
    except Exception:  # noqa: BLE001 - pydicom-data absent or a lookup error: skip the file
        return None
    return Path(found) if found else None


# -- DICOM writers ----------------------------------------------------------------------------

_GDCM_TS = {
    "1.2.840.10008.1.2.4.57": "JPEGLosslessProcess14",
    "1.2.840.10008.1.2.4.70": "JPEGLosslessProcess14_1",
    "1.2.840.10008.1.2.4.50": "JPEGBaselineProcess1",
    "1.2.840.10008.1.2.4.51": "JPEGExtendedProcess2_4",
}


def _gdcm_transcode(src: Path, dst: Path, ts: str) -> bool:
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    if not reader.Read():
        return False
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, _GDCM_TS[ts])))
    change.SetInput(reader.GetImage())
    if not change.Change():
        return False
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(dst))
    return bool(writer.Write())


def _transfer_syntaxes() -> list[tuple[str, str, dict]]:
    """(short name, UID, encoder options) of every transfer syntax written."""
    from pydicom import uid

    out = [
        ("implicit", uid.ImplicitVRLittleEndian, {}),
        ("explicit", uid.ExplicitVRLittleEndian, {}),
        ("bigendian", uid.ExplicitVRBigEndian, {}),
        ("deflated", uid.DeflatedExplicitVRLittleEndian, {}),
        ("rle", uid.RLELossless, {}),
        ("jpegls", uid.JPEGLSLossless, {}),
        ("jpegls-near", uid.JPEGLSNearLossless, {"jls_error": 2}),
        ("j2k", uid.JPEG2000Lossless, {}),
        ("j2k-lossy", uid.JPEG2000, {"j2k_cr": [8]}),
        ("jpeg-lossless", uid.JPEGLossless, {}),
        ("jpeg-sv1", uid.JPEGLosslessSV1, {}),
        ("jpeg-baseline", uid.JPEGBaseline8Bit, {}),
        ("jpeg-extended", uid.JPEGExtended12Bit, {}),
    ]
    try:  # no HTJ2K encoder in pydicom 3.0 (decoding it is tested on real streams elsewhere)
        from pydicom.pixels import get_encoder

        if get_encoder(uid.HTJ2KLossless).is_available:
            out.append(("htj2k", uid.HTJ2KLossless, {}))
    except (AttributeError, ImportError, NotImplementedError):
        pass
    return out


def _save(ds, path: Path, ts: str, options: dict, scratch: Path) -> bool:
    """Save ``ds`` (uncompressed, little endian) as ``path`` in transfer syntax ``ts``."""
    import pydicom
    from pydicom.uid import UID

    ts = UID(ts)
    ds = copy.deepcopy(ds)  # compress() changes the file meta, which a shallow copy shares
    try:
        if ts in _GDCM_TS:
            if ts == "1.2.840.10008.1.2.4.50" and ds.BitsAllocated != 8:
                return False  # baseline JPEG holds 8-bit samples only
            plain = scratch / f"plain-{path.name}"
            ds.save_as(plain, enforce_file_format=True)
            return _gdcm_transcode(plain, path, ts)
        if ts.is_compressed:
            ds.compress(ts, **options)
            ds.save_as(path, enforce_file_format=True)
            return True
        if not ts.is_little_endian and ds.BitsAllocated > 8:
            # pydicom writes the PixelData bytes as given: swap the samples ourselves
            dtype = f"<{'i' if ds.PixelRepresentation else 'u'}{ds.BitsAllocated // 8}"
            ds.PixelData = np.frombuffer(ds.PixelData, dtype=dtype).byteswap().tobytes()
        ds.file_meta.TransferSyntaxUID = ts
        pydicom.dcmwrite(
            path,
            ds,
            implicit_vr=ts.is_implicit_VR,
            little_endian=ts.is_little_endian,
            enforce_file_format=True,
        )
        return True
    except Exception as exc:  # noqa: BLE001 - an encoder without this variant: skip it
        print(f"  skipped {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False


def _smooth(dtype: type, lo: int, hi: int, side: int = SIDE) -> np.ndarray:
    """A smooth test image: a gradient, a bright disc and a faint texture (compresses well)."""
    yy, xx = np.mgrid[0:side, 0:side]
    frac = 0.5 * xx / (side - 1) + 0.3 * (
        (xx - side / 2) ** 2 + (yy - side / 2.5) ** 2 < (side / 5) ** 2
    )
    frac += 0.05 * np.sin(yy / 7.0)
    return (lo + frac.clip(0, 1) * (hi - lo)).round().astype(dtype)


_VARIANTS = {
    "u8": ((np.uint8, 0, 255), {"bits_stored": 8}),
    "u12-mono1": ((np.uint16, 0, 4095), {"bits_stored": 12, "photometric": "MONOCHROME1"}),
    "u16": ((np.uint16, 0, 65535), {"bits_stored": 16}),
    "s12": ((np.int16, -2048, 2047), {"bits_stored": 12}),
    "u12-rescale-window": (
        (np.uint16, 0, 4095),
        {"bits_stored": 12, "rescale": (2.0, -1000.0), "window": (1000.0, 4000.0)},
    ),
}


def synthetic_dicoms(out: Path, scratch: Path) -> Iterator[Path]:
    from engine.dicomwrite import make_dataset

    for vname, ((dtype, lo, hi), header) in _VARIANTS.items():
        ds = make_dataset(_smooth(dtype, lo, hi), **header)
        for tsname, ts, options in _transfer_syntaxes():
            if vname != "u12-mono1" and tsname in ("implicit", "deflated", "bigendian"):
                continue  # the uncompressed variants once each is enough
            path = out / f"dicom-{vname}-{tsname}.dcm"
            if _save(ds, path, ts, options, scratch):
                yield path
    # Without the 128-byte preamble and file meta (ACR-NEMA style), and an RGB secondary capture.
    ds = make_dataset(_smooth(np.uint16, 0, 4095), bits_stored=12)
    path = out / "dicom-no-preamble.dcm"
    plain = scratch / "plain.dcm"
    ds.save_as(plain, enforce_file_format=True)
    raw = plain.read_bytes()
    path.write_bytes(raw[132 + _meta_length(raw) :])
    yield path
    rgb = np.stack([_smooth(np.uint8, 0, 255)] * 3, axis=-1)
    ds = make_dataset(rgb, modality="SC", body_part="CHEST")
    path = out / "dicom-rgb-sc.dcm"
    if _save(ds, path, "1.2.840.10008.1.2.1", {}, scratch):
        yield path


def _meta_length(raw: bytes) -> int:
    """Length of the file meta group after the group-length element (132 + 12 bytes in)."""
    return 12 + int.from_bytes(raw[140:144], "little")


def real_radiographs(out: Path, scratch: Path, small: bool) -> Iterator[Path]:
    import pydicom

    for name in REAL_RADIOGRAPHS:
        src = _testdata(name)
        if src is None:
            print(f"  pydicom-data has no {name}: skipped", file=sys.stderr)
            continue
        if not small:
            dst = out / f"real-{name}"
            shutil.copyfile(src, dst)
            yield dst
        if not name.endswith("UNCR.dcm"):
            continue  # crops come from the uncompressed original, once per radiograph
        ds = pydicom.dcmread(src)
        arr = ds.pixel_array
        r0, c0 = (arr.shape[0] - CROP) // 2, (arr.shape[1] - CROP) // 2
        crop = np.ascontiguousarray(arr[r0 : r0 + CROP, c0 : c0 + CROP])
        ds.set_pixel_data(
            crop,
            photometric_interpretation=ds.PhotometricInterpretation,
            bits_stored=ds.BitsStored,
            generate_instance_uid=False,
        )
        for tsname, ts, options in _transfer_syntaxes():
            dst = out / f"realcrop-{name[:3]}-{tsname}.dcm"
            if _save(ds, dst, ts, options, scratch):
                yield dst


def relabelled(out: Path) -> Iterator[Path]:
    import pydicom
    from pydicom.uid import ComputedRadiographyImageStorage

    for name in RELABELLED:
        src = _testdata(name)
        if src is None:
            continue
        try:
            ds = pydicom.dcmread(src)
            ds.Modality = "CR"
            ds.BodyPartExamined = "CHEST"
            ds.SOPClassUID = ComputedRadiographyImageStorage
            if "file_meta" in ds and ds.file_meta is not None:
                ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
            dst = out / f"relabelled-{name}"
            ds.save_as(dst)
            yield dst
        except Exception as exc:  # noqa: BLE001 - a file pydicom cannot rewrite: skip it
            print(f"  skipped {name}: {type(exc).__name__}: {exc}", file=sys.stderr)


def rasters(out: Path) -> Iterator[Path]:
    import cv2
    from PIL import Image

    grey8 = _smooth(np.uint8, 0, 255)
    grey16 = _smooth(np.uint16, 0, 65535)
    rgb = np.stack([grey8, np.flipud(grey8), np.fliplr(grey8)], axis=-1)
    writers: list[tuple[str, Callable[[Path], object]]] = [
        ("png-grey8.png", lambda p: cv2.imwrite(str(p), grey8)),
        ("png-grey16.png", lambda p: cv2.imwrite(str(p), grey16)),
        ("png-rgb.png", lambda p: cv2.imwrite(str(p), rgb)),
        ("png-palette.png", lambda p: Image.fromarray(grey8).convert("P").save(p)),
        ("png-grey-alpha.png", lambda p: Image.fromarray(grey8).convert("LA").save(p)),
        ("jpeg-grey.jpg", lambda p: cv2.imwrite(str(p), grey8, [cv2.IMWRITE_JPEG_QUALITY, 80])),
        ("jpeg-rgb.jpg", lambda p: cv2.imwrite(str(p), rgb, [cv2.IMWRITE_JPEG_QUALITY, 80])),
        (
            "jpeg-progressive.jpg",
            lambda p: cv2.imwrite(str(p), grey8, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        ),
        ("tiff-grey8.tif", lambda p: cv2.imwrite(str(p), grey8)),
        ("tiff-grey16.tif", lambda p: cv2.imwrite(str(p), grey16)),
        ("tiff-float.tif", lambda p: cv2.imwrite(str(p), grey16.astype(np.float32) / 65535)),
        (
            "tiff-lzw.tif",
            lambda p: Image.fromarray(grey8).save(p, compression="tiff_lzw"),
        ),
        (
            "tiff-deflate.tif",
            lambda p: Image.fromarray(grey16).save(p, compression="tiff_adobe_deflate"),
        ),
    ]
    for name, write in writers:
        path = out / name
        try:
            write(path)
        except Exception as exc:  # noqa: BLE001
            print(f"  skipped {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if path.is_file():
            yield path


def make_corpus(out: Path, *, small: bool = False) -> list[Path]:
    """Write every seed into ``out`` (created); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's remarks on the damaged sample files
        scratch = Path(tmp)
        written += real_radiographs(out, scratch, small)
        written += relabelled(out)
        written += synthetic_dicoms(out, scratch)
        written += rasters(out)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="seed folder (created)")
    parser.add_argument("--small", action="store_true", help="leave the full-size radiographs out")
    parser.add_argument("--force", action="store_true", help="rewrite an existing corpus")
    args = parser.parse_args(argv)
    stamp = args.out / ".complete"
    if stamp.is_file() and not args.force:
        n = sum(1 for p in args.out.iterdir() if p.is_file() and p.name != ".complete")
        print(f"{args.out}: {n} seeds already there (--force rewrites them)")
        return 0
    files = make_corpus(args.out, small=args.small)
    stamp.write_text(f"{len(files)}\n")
    total = sum(p.stat().st_size for p in files)
    print(f"{args.out}: {len(files)} seeds, {total / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
