"""CXR-LT inference engine: image input, preprocessing, models, TTA, ensemble, zero-shot.

Never imports Qt, SQLAlchemy or the app (import-linter enforces it). Heavy libraries (torch,
timm, open_clip) are imported inside the modules that need them, not here.
"""
