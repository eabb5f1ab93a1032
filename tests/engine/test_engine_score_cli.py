"""`cxrlt score` end to end on real RG1 radiographs, against the one-view-at-a-time reference."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch
from conftest import SIZE
from engine_reference import RawTask1, clip_probs, task1_probs

from cxrlt_desktop.cli import main
from engine.classes import ALL_CLASSES, TASK2_CLASSES


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, rg1_files):
    root = tmp_path_factory.mktemp("study")
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy(rg1_files[0], root / "a" / "one.dcm")
    shutil.copy(rg1_files[1], root / "a" / "b" / "two.dcm")
    (root / "a" / "broken.dcm").write_bytes(b"DICM" * 10)
    return root


def test_score_paper_mode_matches_reference(
    tmp_path, folder, rg1_files, csra_file, mlp_file, clip_dir, capsys
):
    import open_clip

    from engine.imageio import read_source
    from engine.zeroshot import load_prompts

    out = tmp_path / "scores.csv"
    code = main(
        [
            "score",
            str(folder),
            str(rg1_files[0]),
            "--out",
            str(out),
            "--task1-checkpoint",
            str(mlp_file),
            "--task1-checkpoint",
            str(csra_file),
            "--clip-model",
            str(clip_dir),
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--batch-size",
            "2",
            "--image-size",
            str(SIZE),
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "img" in err and "3 image(s) scored" in err and "1 rejected" in err
    header, rows = _read(out)
    assert header == ["ImageID", *ALL_CLASSES]
    assert [r[0] for r in rows] == ["a/b/two.dcm", "a/one.dcm", "RG1_UNCR.dcm"]
    got = np.array([[float(v) for v in r[1:]] for r in rows])

    models = [RawTask1(mlp_file), RawTask1(csra_file)]
    clip = open_clip.create_model(f"local-dir:{clip_dir}").eval()
    tok = open_clip.get_tokenizer(f"local-dir:{clip_dir}")
    prompts = load_prompts()
    torch.set_num_threads(1)
    try:
        for row, path in zip(
            got, [folder / "a/b/two.dcm", folder / "a/one.dcm", rg1_files[0]], strict=True
        ):
            x = read_source(path)
            np.testing.assert_allclose(
                row[:30], task1_probs(x, models, [1.0, 1.5], SIZE), atol=1e-5
            )
            np.testing.assert_allclose(
                row[30:], clip_probs(x, clip, tok, prompts, TASK2_CLASSES), atol=1e-5
            )
    finally:
        torch.set_num_threads(2)
    eh, erows = _read(tmp_path / "scores.errors.csv")
    assert eh == ["ImageID", "reason"] and [r[0] for r in erows] == ["a/broken.dcm"] and erows[0][1]


def test_score_without_clip_leaves_zero_shot_empty(tmp_path, rg1_files, csra_file):
    out = tmp_path / "s.csv"
    args = ["score", str(rg1_files[1]), "--out", str(out), "--task1-checkpoint", str(csra_file)]
    args += ["--mode", "fast", "--device", "cpu", "--image-size", str(SIZE), "--no-progress"]
    assert main(args) == 0
    _, rows = _read(out)
    assert rows[0][0] == "RG1_J2KR.dcm"
    assert all(v for v in rows[0][1:31]) and all(v == "" for v in rows[0][31:])


def test_score_clip_only_leaves_task1_empty(tmp_path, rg1_files, clip_dir):
    out = tmp_path / "s.csv"
    args = [
        "score",
        str(rg1_files[0]),
        "--out",
        str(out),
        "--clip-model",
        str(clip_dir),
        "--no-progress",
    ]
    assert main(args) == 0
    _, rows = _read(out)
    assert all(v == "" for v in rows[0][1:31]) and all(0 < float(v) < 1 for v in rows[0][31:])


def test_score_usage_and_model_errors(tmp_path, rg1_files, csra_file, capsys):
    assert main(["score", str(rg1_files[0]), "--out", str(tmp_path / "x.csv")]) == 2
    assert "--task1-checkpoint and/or --clip-model" in capsys.readouterr().err
    args = [
        "score",
        str(rg1_files[0]),
        "--out",
        str(tmp_path / "x.csv"),
        "--task1-checkpoint",
        str(csra_file),
    ]
    assert main([*args, "--task1-weights", "1", "2"]) == 2
    bad = tmp_path / "bad.pth"
    bad.write_text("nope")
    assert (
        main(
            [
                "score",
                str(rg1_files[0]),
                "--out",
                str(tmp_path / "x.csv"),
                "--task1-checkpoint",
                str(bad),
            ]
        )
        == 1
    )
    assert f"{bad}: not a safetensors or torch checkpoint" in capsys.readouterr().err
    assert main([*args, "--task1-arch", "convnextv2_base"]) == 1
    assert "holds a convnextv2_atto backbone" in capsys.readouterr().err
    # nothing scoreable: exit 1, the reason in the errors file
    code = main(
        [
            "score",
            str(tmp_path / "missing.dcm"),
            "--out",
            str(tmp_path / "y.csv"),
            "--task1-checkpoint",
            str(csra_file),
            "--no-progress",
        ]
    )
    assert code == 1
    _, erows = _read(tmp_path / "y.errors.csv")
    assert erows == [[str(tmp_path / "missing.dcm"), "no such file or folder"]]


def test_score_cpu_backends_give_the_same_numbers(tmp_path, rg1_files, csra_file, mlp_file):
    from engine import onnx_backend

    got = {}
    for backend in ("torch", "onnx", "openvino"):
        if backend != "torch" and not onnx_backend.available(
            "onnxruntime" if backend == "onnx" else backend
        ):
            continue
        out = tmp_path / f"{backend}.csv"
        args = ["score", str(rg1_files[0]), "--out", str(out), "--no-progress"]
        args += ["--task1-checkpoint", str(csra_file), str(mlp_file), "--device", "cpu"]
        args += ["--image-size", str(SIZE), "--cpu-backend", backend]
        assert main(args) == 0
        _, rows = _read(out)
        got[backend] = np.array([float(v) for v in rows[0][1:31]])
    assert len(got) >= 2
    for backend, probs in got.items():
        np.testing.assert_allclose(probs, got["torch"], atol=1e-5, err_msg=backend)
    with pytest.raises(SystemExit):
        main(["score", str(rg1_files[0]), "--out", str(tmp_path / "x.csv"), "--cpu-backend", "tpu"])
