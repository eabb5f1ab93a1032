"""pydicom 3 chooses pixel-data plugins by importing them by name at run time: list them all
(the contrib hook for ``pydicom`` lists most; this keeps the set complete for ``pydicom.pixels``)."""

from PyInstaller.utils.hooks import collect_submodules

hiddenimports = collect_submodules("pydicom.pixels.decoders") + collect_submodules(
    "pydicom.pixels.encoders"
)
