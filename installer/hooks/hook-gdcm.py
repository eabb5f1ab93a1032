"""python-gdcm: the SWIG module ``_gdcm`` with its shared libraries, and the XML dictionaries
(Part3.xml ...) that gdcm.py looks for next to the frozen executable's modules."""

from PyInstaller.utils.hooks import collect_data_files, collect_dynamic_libs, copy_metadata

hiddenimports = ["_gdcm", "_gdcm.gdcmswig", "_gdcm._gdcmswig"]
binaries = collect_dynamic_libs("_gdcm")
datas = collect_data_files("_gdcm", includes=["XML/*.xml"]) + copy_metadata("python-gdcm")
