"""Colour adjustments for `modulate`, on RGB uint8 pixels (alpha is the caller's to keep).

Brightness, saturation, hue and lightness work as sharp's `modulate` (which the hosted
API runs): in CIE LCh(ab), D65, L' = L * brightness + lightness, C' = C * saturation,
h' = h + hue; darkening also fades the chroma, so that brightness 0 is black. Exposure
multiplies linear light (2: one photographic stop brighter) and contrast scales the
sRGB values about mid-grey, as sharp's `linear(c, 128 - 128c)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# sRGB primaries to CIE XYZ, D65 white (IEC 61966-2-1).
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=np.float32,
)
_XYZ_TO_RGB = np.array(
    [
        [3.2404542, -1.5371385, -0.4985314],
        [-0.9692660, 1.8760108, 0.0415560],
        [0.0556434, -0.2040259, 1.0572252],
    ],
    dtype=np.float32,
)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)  # D65, Y = 1
_DELTA = 6 / 29
# Rows per numpy pass: the float arrays of a whole large image would cost gigabytes.
_CHUNK_PIXELS = 1 << 20


@dataclass(frozen=True)
class Modulation:
    brightness: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0  # degrees
    lightness: float = 0.0
    contrast: float = 1.0
    exposure: float = 1.0

    @property
    def uses_lch(self) -> bool:
        return (self.brightness, self.saturation, self.hue % 360, self.lightness) != (1, 1, 0, 0)


def modulate(rgb: np.ndarray, modulation: Modulation) -> np.ndarray:
    """A new (H, W, 3) uint8 array: `rgb` adjusted."""
    height, width = rgb.shape[:2]
    out = np.empty_like(rgb)
    rows = max(1, _CHUNK_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        out[top : top + rows] = _modulate_chunk(rgb[top : top + rows], modulation)
    return out


def _modulate_chunk(rgb: np.ndarray, modulation: Modulation) -> np.ndarray:
    values = rgb.astype(np.float32) / 255
    if modulation.uses_lch or modulation.exposure != 1:
        linear = _to_linear(values)
        if modulation.uses_lch:
            linear = _from_lab(_adjust_lch(_to_lab(linear), modulation))
        linear = np.clip(linear * modulation.exposure, 0, 1)
        values = _from_linear(linear)
    if modulation.contrast != 1:
        # About 128 of 255, as sharp's linear(c, 128 - 128c): 128 stays 128 exactly.
        values = ((values * 255 - 128) * modulation.contrast + 128) / 255
    result: np.ndarray = np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)
    return result


def _to_linear(values: np.ndarray) -> np.ndarray:
    linear: np.ndarray = np.where(
        values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4
    )
    return linear


def _from_linear(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    values: np.ndarray = np.where(
        linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055
    )
    return values


def _to_lab(linear: np.ndarray) -> np.ndarray:
    xyz = (linear @ _RGB_TO_XYZ.T) / _WHITE
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz / (3 * _DELTA**2) + 4 / 29)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def _from_lab(lab: np.ndarray) -> np.ndarray:
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29)) * _WHITE
    linear: np.ndarray = xyz @ _XYZ_TO_RGB.T
    return linear


def _adjust_lch(lab: np.ndarray, modulation: Modulation) -> np.ndarray:
    before = lab[..., 0]
    lightness = np.clip(before * modulation.brightness + modulation.lightness, 0, 100)
    # Darkening scales chroma too, so that no light is black: sharp keeps the chroma, and
    # a saturated red at L = 0 still comes out dark red once clipped to sRGB.
    fade = np.minimum(1, lightness / np.maximum(before, 1e-6))
    chroma = np.hypot(lab[..., 1], lab[..., 2]) * modulation.saturation * fade
    hue = np.arctan2(lab[..., 2], lab[..., 1]) + math.radians(modulation.hue)
    return np.stack([lightness, chroma * np.cos(hue), chroma * np.sin(hue)], axis=-1)
