"""Augmentations for training crops.

Geometric and photometric changes apply to the *sharp* crop before blurring, so
they never alter the blur itself: flips and 90-degree rotations (a motion angle
stays uniform over 0..180 either way), and colour, contrast and gamma jitter.
Contrast goes down to 0.6 times the photograph's. Dim and hazy scenes read as
blurred more often (`python benchmarks/camera_steps.py`, step `low_contrast_0.3_0.4`),
but a fine-tune with contrast down to 0.3 did not fix that: see the model card.
A quarter of the crops are also underexposed, every grey level times 0.25 to 0.8
(`underexposure_probability`, `underexposure_gain`), so that the size of an edge's step
never tells sharp from blurred: a dim photograph's edges are as sharp as a bright one's.
In the training stream, a crop that jitter leaves under a mean gradient of 4.0 has its levels
stretched back up to the texture it was cut with, at most 4.0 (`crops.keep_texture`): blur would
not show in it, and `blurnet predict` leaves such tiles out.
With it, a fine-tune's sharp recall on crops underexposed by 0.3 to 0.5 rose from 0.62 to
0.72 (`python benchmarks/camera_steps.py --images 256`, step `dim_0.3_0.5`; see the model card).
The file format applies to the final blurred, noisy image, as a camera or a
web upload would (`choose_format`, `save_all_as`): JPEG (quality 50 to 95 on 60 % of training
samples, OpenCV's default 4:2:0 chroma) or, on 5 %, a palette image as a GIF
or PNG-8 holds it (24 to 128 colours, Floyd-Steinberg dithered: a 256-colour
GIF photograph uses 30 to 200 colours in a 96 px tile). Dithering
scatters fine grain over smooth blurred areas: a network that never saw it
confuses the blur types (held-out defocus recall 0.31 at 64 colours,
`python benchmarks/accuracy.py`). The camera steps before the format are in
`data_pipeline.camera`.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np


PALETTE_STRIP = 32  # rows per independent Floyd-Steinberg scan (`save_all_as`)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; `AugmentConfig.none()` turns everything off."""

    flips: bool = True
    contrast: tuple[float, float] = (0.6, 1.3)
    brightness: tuple[float, float] = (-25.0, 25.0)
    gamma: tuple[float, float] = (0.7, 1.4)
    colour: float = 0.1
    jpeg_probability: float = 0.6
    jpeg_quality: tuple[int, int] = (50, 95)
    palette_probability: float = 0.05
    palette_colours: tuple[int, int] = (24, 128)
    underexposure_probability: float = 0.25
    underexposure_gain: tuple[float, float] = (0.25, 0.8)

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation at all."""
        return cls(flips=False, contrast=(1.0, 1.0), brightness=(0.0, 0.0), gamma=(1.0, 1.0), colour=0.0, jpeg_probability=0.0,
                   palette_probability=0.0, underexposure_probability=0.0)

    @classmethod
    def with_palette_share(cls, share: float) -> "AugmentConfig":
        """The default augmentation with `share` of the samples saved as dithered palette images (`blurnet fit
        --palette-share`); `ValueError` echoing a share that the JPEG share leaves no room for."""
        room = 1.0 - cls.jpeg_probability  # a sample is saved as JPEG or as a palette image, not both
        if not 0.0 <= share <= room:
            raise ValueError(f"palette share must be in [0, {room:g}] ({cls.jpeg_probability:g} of the samples are "
                             f"saved as JPEG), got {share!r}.")
        return cls(palette_probability=share)

    def jitter(self) -> dict:
        """The photometric jitter ranges, JSON-friendly, as recorded in `blurnet.json` beside the camera."""
        return {"contrast": list(self.contrast), "brightness": list(self.brightness), "gamma": list(self.gamma), "colour": self.colour,
                "underexposure_probability": self.underexposure_probability,
                "underexposure_gain": list(self.underexposure_gain)}

    def file_formats(self) -> dict:
        """The file-format share of the config, JSON-friendly, as recorded in `blurnet.json` beside the camera."""
        return {"jpeg_probability": self.jpeg_probability, "jpeg_quality": list(self.jpeg_quality),
                "palette_probability": self.palette_probability, "palette_colours": list(self.palette_colours)}

    def __post_init__(self):
        if not 0.0 <= self.jpeg_probability <= 1.0:
            raise ValueError(f"jpeg_probability must be in [0, 1], got {self.jpeg_probability!r}.")
        if not (0.0 <= self.palette_probability and self.jpeg_probability + self.palette_probability <= 1.0 + 1e-9):
            raise ValueError(f"palette_probability must be in [0, 1 - jpeg_probability], got {self.palette_probability!r} "
                             f"with jpeg_probability {self.jpeg_probability!r}.")
        if not 2 <= self.palette_colours[0] <= self.palette_colours[1]:
            raise ValueError(f"palette_colours must be 2 <= low <= high, got {self.palette_colours!r}.")
        if not (1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100):
            raise ValueError(f"jpeg_quality must be 1 <= low <= high <= 100, got {self.jpeg_quality!r}.")
        if not 0.0 <= self.underexposure_probability <= 1.0:
            raise ValueError(f"underexposure_probability must be in [0, 1], got {self.underexposure_probability!r}.")
        if not 0.0 < self.underexposure_gain[0] <= self.underexposure_gain[1] <= 1.0:
            raise ValueError(f"underexposure_gain must be 0 < low <= high <= 1, got {self.underexposure_gain!r}.")
        for name in ("contrast", "brightness", "gamma"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"{name} range must be low <= high, got {getattr(self, name)!r}.")
        if self.gamma[0] <= 0:
            raise ValueError(f"gamma range must be positive, got {self.gamma!r}.")
        if self.contrast[0] <= 0:
            raise ValueError(f"contrast range must be positive, got {self.contrast!r}.")
        if not 0.0 <= self.colour < 1.0:
            raise ValueError(f"colour must be in [0, 1) (a channel gain of 1 - colour to 1 + colour), got {self.colour!r}.")


def augment_sharp(crop: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Flip, rotate and jitter a sharp uint8 crop; returns float32 0..255.

    Gamma, contrast (about the crop's mean), brightness, per-channel colour
    gains and, on `underexposure_probability` of the crops, one gain drawn from
    `underexposure_gain` for every level are folded into one 256-entry lookup
    table per channel, applied with `cv2.LUT`, so jitter costs about as much as a copy.
    """
    if crop.dtype != np.uint8:
        raise ValueError(f"augment_sharp expects a uint8 crop, got {crop.dtype}.")
    out = crop
    if config.flips:
        out = np.rot90(out, int(rng.integers(0, 4)))
        if rng.random() < 0.5:
            out = out[:, ::-1]
    out = np.ascontiguousarray(out)
    gamma = float(rng.uniform(*config.gamma))
    contrast = float(rng.uniform(*config.contrast))
    brightness = float(rng.uniform(*config.brightness))
    gains = 1.0 + config.colour * rng.uniform(-1.0, 1.0, size=3) if config.colour else np.ones(3)
    if config.underexposure_probability > 0 and rng.random() < config.underexposure_probability:
        gains = gains * rng.uniform(*config.underexposure_gain)
    levels = 255.0 * (np.arange(256, dtype=np.float64) / 255.0) ** gamma
    mean = 255.0 * (float(np.mean(cv2.mean(out)[:3])) / 255.0) ** gamma
    curve = (levels - mean) * contrast + mean + brightness
    table = np.clip(curve[:, None] * gains[None, :], 0.0, 255.0).astype(np.float32)
    return cv2.LUT(out, table.reshape(256, 1, 3))


def choose_format(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> tuple:
    """The file format of one sample: `("jpeg", quality)` with probability `jpeg_probability`,
    `("palette", palette)` (`sample_palette`: `palette_colours` colours drawn from `image`) with probability
    `palette_probability`, else `("none",)`. With both probabilities 0 (evaluation) no random number is drawn:
    the held-out images do not depend on the format settings."""
    if config.jpeg_probability <= 0 and config.palette_probability <= 0:
        return ("none",)
    draw = rng.random()
    if draw < config.jpeg_probability:
        return ("jpeg", int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
    if draw < config.jpeg_probability + config.palette_probability:
        low, high = config.palette_colours
        colours = int(round(np.exp(rng.uniform(np.log(low), np.log(high)))))  # log-uniform: few colours as often as many
        return ("palette", sample_palette(image, colours, rng))
    return ("none",)


def save_all_as(images: list[np.ndarray], formats: list[tuple]) -> list[np.ndarray]:
    """Each image after its format's round trip (`choose_format`); "none" returns the image itself.

    Palette images are dithered in strips of `PALETTE_STRIP` rows, each strip its own scan (no error passes
    from one strip to the next), and all strips of one shape in one `palette_dither` call: at 128 px this
    halves the scan's steps, and its fixed cost is paid once per shape, not per image. The dither pattern
    restarts at every strip edge, in training and in `benchmarks/accuracy.py`'s palette test alike."""
    out = [np.asarray(image, np.float32) for image in images]
    strips: dict[tuple, list[tuple[int, int]]] = {}  # strip shape -> (image, first row)
    for i, (image, fmt) in enumerate(zip(out, formats)):
        if fmt[0] == "jpeg":
            out[i] = jpeg_roundtrip(image, fmt[1])
        elif fmt[0] == "palette":
            out[i] = image.copy()
            for top in range(0, image.shape[0], PALETTE_STRIP):
                strips.setdefault(image[top : top + PALETTE_STRIP].shape, []).append((i, top))
        elif fmt[0] == "none":
            out[i] = images[i]
        else:
            raise ValueError(f"unknown file format {fmt[0]!r}; expected 'jpeg', 'palette' or 'none'.")
    for shape, places in strips.items():
        colours = max(len(formats[i][1]) for i, _ in places)
        # Pad every palette to the largest by repeating its first colour (a duplicate never changes the nearest).
        palettes = np.stack([np.concatenate([formats[i][1], np.repeat(formats[i][1][:1], colours - len(formats[i][1]), 0)])
                             for i, _ in places])
        stack = np.stack([out[i][top : top + shape[0]] for i, top in places])
        for (i, top), dithered in zip(places, palette_dither(stack, palettes)):
            out[i][top : top + shape[0]] = dithered
    return out


def sample_palette(image: np.ndarray, colours: int, rng: np.random.Generator) -> np.ndarray:
    """An adaptive palette of `colours` RGB entries (float32, rounded to integers): the colours of random pixels
    of `image`, so that the palette is densest where the image's colours are, as a median-cut GIF palette is."""
    pixels = np.asarray(image, np.float32).reshape(-1, 3)
    chosen = rng.choice(len(pixels), size=min(int(colours), len(pixels)), replace=False)
    return np.round(np.clip(pixels[chosen], 0.0, 255.0))


def palette_dither(images: np.ndarray, palettes: np.ndarray) -> np.ndarray:
    """`images` (H, W, 3), or a stack (B, H, W, 3), float 0..255, in the colours of `palettes` ((N, 3), or one
    per image (B, N, 3)), by Floyd-Steinberg error diffusion; float32 of the input's shape.

    Each pixel takes the palette colour nearest to its value plus the error diffused so far, and passes
    its own error on: 7/16 right, 3/16 down-left, 5/16 down, 1/16 down-right. Pixel (y, x) needs only
    pixels with a smaller `t = 2y + x`, so the image is stored skewed, row y shifted right by 2y, where
    each wavefront `t` is one contiguous column of pixels, quantised in one vectorised step for all images
    (2H + W steps instead of H * W), with the result of the pixel-by-pixel scan up to float32 rounding.
    """
    images = np.asarray(images, np.float32)
    single = images.ndim == 3
    if single:
        images, palettes = images[None], np.asarray(palettes)[None]
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"palette_dither expects an (H, W, 3) image or a (B, H, W, 3) stack, got shape {images.shape}.")
    palettes = np.asarray(palettes, np.float32)
    if palettes.shape[0] != images.shape[0] or palettes.shape[2:] != (3,):
        raise ValueError(f"palettes must be (N, 3) per image, got shape {palettes.shape} for {images.shape[0]} image(s).")
    palettes_t, half_norms = np.ascontiguousarray(palettes.transpose(0, 2, 1)), 0.5 * (palettes**2).sum(-1)[:, None, :]
    b, h, w = images.shape[:3]
    steps = 2 * (h - 1) + w
    skewed = np.zeros((steps + 3, b, h + 1, 3), np.float32)  # [t, image, y]: pixel (y, t - 2y); a spare row below
    inside = np.zeros((steps, 1, h, 1), np.float32)
    for y in range(h):
        skewed[2 * y : 2 * y + w, :, y] = images[:, y].transpose(1, 0, 2)
        inside[2 * y : 2 * y + w, :, y] = 1.0
    down = np.float32([3, 5, 1])[:, None, None, None] / 16  # (y + 1, x - 1), (y + 1, x), (y + 1, x + 1)
    quantised = np.empty((steps, b, h, 3), np.float32)
    for t in range(steps):
        values = skewed[t, :, :h]
        nearest_index = np.argmin(half_norms - values @ palettes_t, axis=-1)  # min |v - p|^2 = min |p|^2/2 - v.p
        nearest = np.take_along_axis(palettes, nearest_index[..., None], axis=1)
        quantised[t] = nearest
        error = (values - nearest) * inside[t]  # cells outside the image pass nothing on
        skewed[t + 1, :, :h] += error * (7 / 16)  # (y, x + 1)
        skewed[t + 1 : t + 4, :, 1:] += error * down
    out = np.stack([quantised[2 * y : 2 * y + w, :, y] for y in range(h)], axis=2).transpose(1, 2, 0, 3)
    return out[0] if single else out


def check_jpeg_quality(quality) -> int:
    """`quality` as an int; `ValueError` echoing it unless it is in 1..100."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality!r}.")
    return int(quality)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """`image` (float 0..255 RGB) JPEG-encoded at `quality` (1..100) and decoded, as float32."""
    quality = check_jpeg_quality(quality)
    image = np.asarray(image, np.float32)
    as_uint8 = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    rgb = as_uint8.ndim == 3 and as_uint8.shape[2] == 3
    if rgb:  # OpenCV's JPEG expects BGR: luma and chroma must be computed on the right channels
        as_uint8 = cv2.cvtColor(as_uint8, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", as_uint8, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 array
        raise ValueError(f"OpenCV could not JPEG-encode an array of shape {as_uint8.shape}.")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if rgb:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return decoded.reshape(image.shape).astype(np.float32)
