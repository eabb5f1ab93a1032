"""pylibjpeg finds its decoders/encoders through importlib.metadata entry points
(``pylibjpeg.pixel_data_decoders`` ...), so the plugins' distribution metadata must be bundled
alongside their modules, or JPEG 2000 / RLE pixel data cannot be decoded in the frozen app."""

from PyInstaller.utils.hooks import copy_metadata

hiddenimports = ["openjpeg", "openjpeg.utils", "rle", "rle.utils", "pylibjpeg.utils"]
datas = []
for dist in ("pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"):
    datas += copy_metadata(dist)
