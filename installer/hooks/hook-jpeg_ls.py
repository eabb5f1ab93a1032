"""pyjpegls (module ``jpeg_ls``) reads its own version with importlib.metadata at import."""

from PyInstaller.utils.hooks import copy_metadata

hiddenimports = ["_CharLS", "jpeg_ls.CharLS", "jpeg_ls.data_io"]
datas = copy_metadata("pyjpegls")
