"""The app: sub-commands are imported by name (cli.COMMANDS), the GUI lazily, and Alembic runs
the migration scripts from files, so collect every submodule and the migrations as data."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

hiddenimports = collect_submodules("cxrlt_desktop") + collect_submodules("engine")
hiddenimports += collect_submodules("training") + ["resources"]
datas = collect_data_files(
    "cxrlt_desktop",
    include_py_files=True,
    includes=[
        "store/migrations/**/*.py",
        "store/migrations/*.mako",
        "store/*.ini",
        "**/*.json",
        "**/*.png",
        "**/*.svg",
    ],
)
datas += copy_metadata("cxrlt-desktop")
