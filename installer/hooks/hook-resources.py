"""resources/: class list, prompts, icons, default settings (read with importlib.resources)."""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("resources", excludes=["**/__pycache__/**"])
