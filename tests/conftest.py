import os

# Set before anything imports huggingface_hub or Qt.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Keep tests from touching the real user data folder.
os.environ.setdefault("CXRLT_DATA_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "cxrlt-test-data"))
