"""Task 2: zero-shot scores from an open_clip model (WhyXrayCLIP) against prompt ensembles.

score_c = mean_k <v, t_{c,k}> with v and t_{c,k} L2-normalised; p_c = sigmoid(5 * score_c).
Since the mean of dot products is the dot product with the mean, each class reduces to one
prototype (the mean of its normalised prompt embeddings, not renormalised) and scoring a batch is
one matrix product.

Prompt embeddings are cached on disk (``cache_dir``), keyed by the model file's sha256 and the
prompts' hash, because encoding ~80 prompts with ViT-L-14 takes seconds on a CPU.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources as importlib_resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.classes import TASK2_CLASSES
from engine.smallfiles import MAX_TEXT_BYTES, SmallFileError, read_small_text

if TYPE_CHECKING:
    import torch

SCALE = 5.0
MAX_PROMPTS_BYTES = MAX_TEXT_BYTES  # the shipped prompts file is under 4 KB
WEIGHT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
)


class ZeroShotError(Exception):
    """A CLIP folder or prompts file that cannot be used. ``str(e) == f"{path}: {reason}"``."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def default_prompts_path() -> Path:
    """``resources/prompts.json`` shipped with the app."""
    return Path(str(importlib_resources.files("resources").joinpath("prompts.json")))


def load_prompts(path: Path | str | None = None) -> dict[str, list[str]]:
    """Read and check a prompts file: ``{"Scoliosis": ["...", ...], ...}`` for the 6 classes.

    Raises
    ------
    ZeroShotError
        Not a regular file of at most 1 MiB (a FIFO, a device, a folder), unreadable JSON, a
        missing class, an empty or non-string prompt list. Unknown class names are refused too
        (a typo would otherwise silently drop a class).
    """
    path = Path(path) if path is not None else default_prompts_path()
    try:
        text = read_small_text(path, MAX_PROMPTS_BYTES)
    except SmallFileError as e:
        raise ZeroShotError(path, f"cannot read the prompts file: {e.reason}") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ZeroShotError(path, f"cannot read the prompts JSON ({e})") from e
    if not isinstance(data, dict):
        raise ZeroShotError(path, "expected a JSON object {class name: [prompt, ...]}")
    lower = {k.lower(): k for k in data}
    out: dict[str, list[str]] = {}
    for cls in TASK2_CLASSES:
        key = lower.get(cls.lower())
        if key is None:
            raise ZeroShotError(
                path, f"no prompts for class {cls!r} (need all of {', '.join(TASK2_CLASSES)})"
            )
        prompts = data[key]
        if (
            not isinstance(prompts, list)
            or not prompts
            or not all(isinstance(p, str) and p.strip() for p in prompts)
        ):
            raise ZeroShotError(
                path, f"class {cls!r}: expected a non-empty list of non-empty strings"
            )
        out[cls] = [p.strip() for p in prompts]
    extra = sorted(set(lower) - {c.lower() for c in TASK2_CLASSES})
    if extra:
        raise ZeroShotError(
            path, f"unknown class names {extra}; expected {', '.join(TASK2_CLASSES)}"
        )
    return out


def prompts_hash(prompts: dict[str, list[str]]) -> str:
    """sha256 of the prompts in canonical JSON (class order fixed, prompts in file order)."""
    canon = json.dumps(
        [[c, prompts[c]] for c in TASK2_CLASSES], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def find_weights(folder: Path) -> Path:
    """The weight file open_clip's ``local-dir:`` loader picks in ``folder``."""
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = (
        sorted(folder.glob("*.safetensors"))
        + sorted(folder.glob("*.bin"))
        + sorted(folder.glob("*.pth"))
    )
    if not found:
        raise ZeroShotError(
            folder,
            "no CLIP weight file (open_clip_pytorch_model.bin or .safetensors) in the folder",
        )
    return found[0]


def class_prototypes(prompt_embeddings: np.ndarray, counts: list[int]) -> np.ndarray:
    """Per class, the mean of its L2-normalised prompt embeddings: [n_classes, D].

    Parameters
    ----------
    prompt_embeddings : numpy.ndarray
        [sum(counts), D] prompt embeddings in class order (normalised here).
    counts : list of int
        Prompts per class.
    """
    e = np.asarray(prompt_embeddings, dtype=np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    out, start = [], 0
    for n in counts:
        out.append(e[start : start + n].mean(axis=0))
        start += n
    return np.stack(out)


def zero_shot_probs(
    image_embeddings: np.ndarray, prototypes: np.ndarray, scale: float = SCALE
) -> np.ndarray:
    """sigmoid(scale * <v / |v|, prototype_c>) for every image and class: [N, n_classes]."""
    v = np.asarray(image_embeddings, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-scale * (v @ np.asarray(prototypes, dtype=np.float64).T)))


@dataclass
class ZeroShotModel:
    """A loaded open_clip model with its class prototypes."""

    model: Any
    folder: Path
    weights_path: Path
    sha256: str
    prototypes: np.ndarray  # [6, D] float64
    prompts_hash: str
    image_size: int
    device: Any
    # engine.onnx_backend.ClipImageRunner: the image tower in OpenVINO (fp32, CPU), or None
    image_runner: Any = None

    def use_openvino(self, cache_dir: Path | str | None, threads: int) -> None:
        """Run the image tower in OpenVINO on the CPU in fp32 from now on (exported to ONNX
        once into ``cache_dir``); the text embeddings were computed by PyTorch already. The
        PyTorch image tower is freed (ViT-L-14's holds ~1.2 GB): OpenVINO has its own copy."""
        from engine.onnx_backend import make_clip_runner

        self.image_runner = make_clip_runner(
            self.model.visual,
            self.sha256,
            self.image_size,
            Path(cache_dir) if cache_dir is not None else None,
            threads,
        )
        self.model.visual = None

    def encode_images(self, x: torch.Tensor, autocast_dtype: Any = None) -> np.ndarray:
        """[N, 3, S, S] normalised images -> [N, D] float64 image embeddings (not normalised).

        Through the OpenVINO tower when one is set and no autocast is asked for."""
        import torch

        if self.image_runner is not None and autocast_dtype is None:
            arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
            return np.asarray(self.image_runner(arr), dtype=np.float64)
        with torch.inference_mode(), _autocast(self.device, autocast_dtype):
            emb = self.model.encode_image(x.to(self.device))
        return emb.float().cpu().numpy().astype(np.float64)

    def probs(self, x: torch.Tensor, autocast_dtype: Any = None) -> np.ndarray:
        """[N, 3, S, S] normalised images -> [N, 6] zero-shot probabilities."""
        return zero_shot_probs(self.encode_images(x, autocast_dtype), self.prototypes)


def _autocast(device: Any, dtype: Any):
    import contextlib

    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def load_zero_shot(
    folder: Path | str,
    *,
    prompts: dict[str, list[str]],
    cache_dir: Path | str | None,
    device: Any = "cpu",
) -> ZeroShotModel:
    """Load an open_clip ``local-dir:`` folder and build the class prototypes.

    Parameters
    ----------
    folder : path-like
        Holds ``open_clip_config.json`` and the weights (the WhyXrayCLIP repo layout).
    prompts : dict
        From :func:`load_prompts`.
    cache_dir : path-like or None
        Where prompt embeddings are cached (the app passes ``cxrlt_desktop.paths.cache_dir()``);
        None disables the cache.
    device : str or torch.device
        Where the image encoder runs.

    Raises
    ------
    ZeroShotError
        Missing folder, config or weights, or weights that do not fit the config.
    """
    from engine.checkpoints import sha256_file

    folder = Path(folder)
    if not folder.is_dir():
        raise ZeroShotError(folder, "CLIP model folder not found")
    if not (folder / "open_clip_config.json").is_file():
        raise ZeroShotError(
            folder, "no open_clip_config.json: expected a WhyXrayCLIP/open_clip folder"
        )
    weights = find_weights(folder)
    digest = sha256_file(weights)
    model = _create_model(folder)
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, tuple | list) else size)
    phash = prompts_hash(prompts)
    counts = [len(prompts[c]) for c in TASK2_CLASSES]
    cache_file = None
    emb = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"clip-prompts-{digest[:32]}-{phash[:32]}.npz"
        emb = _read_cached_embeddings(cache_file, sum(counts))
    if emb is None:
        emb = _embed_prompts(model, folder, prompts)
        if cache_file is not None:
            _write_cached_embeddings(cache_file, emb)
    model.to(device)
    return ZeroShotModel(
        model=model,
        folder=folder,
        weights_path=weights,
        sha256=digest,
        prototypes=class_prototypes(emb, counts),
        prompts_hash=phash,
        image_size=size,
        device=device,
    )


def _create_model(folder: Path) -> Any:
    """The open_clip model of a ``local-dir:`` folder, on the CPU in eval mode."""
    import open_clip

    try:
        # weights_only loading is open_clip's default; a pickle with code is refused by torch.
        model = open_clip.create_model(f"local-dir:{folder}", device="cpu")
    except Exception as e:  # open_clip raises a mix of ValueError/RuntimeError/KeyError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZeroShotError(folder, f"cannot load the CLIP model ({first[:300]})") from e
    model.eval()
    return model


def _embed_prompts(model: Any, folder: Path, prompts: dict[str, list[str]]) -> np.ndarray:
    """Text embeddings of every prompt, class by class in TASK2_CLASSES order."""
    import open_clip
    import torch

    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    texts = [p for c in TASK2_CLASSES for p in prompts[c]]
    with torch.inference_mode():
        return model.encode_text(tokenizer(texts)).float().numpy()


def _read_cached_embeddings(cache_file: Path, n: int) -> np.ndarray | None:
    """The cached embeddings if the file holds ``n`` of them; None if absent or damaged."""
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            if z["embeddings"].shape[0] == n:
                return z["embeddings"]
    except (OSError, ValueError, KeyError):
        pass  # a damaged cache is rebuilt
    return None


def _write_cached_embeddings(cache_file: Path, emb: np.ndarray) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, embeddings=emb)
        tmp.replace(cache_file)
    except OSError:
        pass  # caching is an optimisation; a read-only cache folder is not an error
