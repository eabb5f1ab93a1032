"""open_clip reads its model configs (model_configs/*.json) and the BPE vocabulary
(bpe_simple_vocab_16e6.txt.gz) from files next to its modules: collect them as data."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules

datas = collect_data_files("open_clip", includes=["model_configs/*.json", "*.txt.gz", "*.json"])
hiddenimports = collect_submodules("open_clip", filter=lambda name: "push_to_hf_hub" not in name)
