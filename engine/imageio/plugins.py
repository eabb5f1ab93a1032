"""Which pydicom plugin decodes which transfer syntax, and the decode of frame 0 through them.

Used in-process and inside the decoder workers of :mod:`~engine.imageio.isolation`; it imports
only pydicom and numpy, so a worker starts quickly.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# Which installed plugin decodes which transfer syntax first (pydicom falls back to the others).
PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.90": ("pylibjpeg",),  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": ("pylibjpeg",),  # JPEG 2000
    "1.2.840.10008.1.2.4.201": ("pylibjpeg",),  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": ("pylibjpeg",),  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": ("pylibjpeg",),  # HTJ2K
    "1.2.840.10008.1.2.4.80": ("pyjpegls",),  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": ("pyjpegls",),  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),  # RLE
    "1.2.840.10008.1.2.4.50": ("gdcm", "pillow"),  # JPEG baseline
    "1.2.840.10008.1.2.4.51": ("gdcm", "pillow"),  # JPEG extended
    "1.2.840.10008.1.2.4.57": ("gdcm",),  # JPEG lossless
    "1.2.840.10008.1.2.4.70": ("gdcm",),  # JPEG lossless SV1
}

# pydicom's wrapper around the plugins' own errors.
_ALL_PLUGINS = re.compile(r"^Unable to decode as exceptions were raised by all available plugins: ")


class PluginError(Exception):
    """No plugin decoded the data; the message is the one-line reason."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def decode_frame(ds: Any, plugins: list[str]) -> np.ndarray:
    """Frame 0 of ``ds`` as stored values (colour already RGB), trying ``plugins`` in order.

    Raises
    ------
    PluginError
        Every plugin failed; the preferred plugin's complaint is the reason.
    MemoryError
        A decoder could not allocate its output.
    """
    from pydicom.pixels import get_decoder

    ts = ds.file_meta.TransferSyntaxUID
    decoder = get_decoder(ts)
    errors: list[str] = []
    for plugin in [*plugins, ""]:
        try:
            arr, _ = decoder.as_array(ds, index=0, decoding_plugin=plugin)
            return arr
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - try the next plugin, report all if none works
            text = _ALL_PLUGINS.sub("", _one_line(exc))
            if plugin and text.startswith(f"{plugin}: "):
                text = text[len(plugin) + 2 :]
            errors.append(f"{plugin or 'all plugins'}: {text}")
    # The preferred decoder's complaint is the telling one; pydicom's "all plugins" text repeats
    # it beside the failures of decoders that were never meant for this data.
    raise PluginError(
        f"cannot decode {ts.name} pixel data (damaged or unsupported compressed data): " + errors[0]
    )
