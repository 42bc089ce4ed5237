"""A picture of a digit prepared the way MNIST was made: NIST's procedure, in NumPy and Pillow.

    from mnist_basics.predict.prepare import prepare, read_picture
    x = prepare(read_picture(Path("my_digit.png")))  # uint8 [28, 28], light digit on dark

MNIST's digits are NIST's black-and-white scans with the digit's bounding box scaled to fit a
20x20 box (aspect ratio kept, anti-aliased), then placed in the 28x28 field so that its centre
of mass is at the centre. `prepare` does the same to any grey picture:

1. ink: the paper is the median grey of the border strip. When the ink is darker than that
   (the darkest pixel is further from it than the lightest) the picture is flipped to MNIST's
   light on dark. The paper becomes 0, and the levels from a quarter to three quarters of
   the way from paper to ink ramp to 0..255, so paper grain, shadows and uneven ink go, as
   in NIST's bilevel scans;
2. the ink's bounding box, padded to a square, is area-averaged (a box filter: each output
   pixel is the mean of the source area it covers) to an 80x80 fine grid;
3. a pen thinner than MNIST's is widened there to MNIST's width, so that a digit written
   with a ballpoint leaves as much ink as MNIST's do (its writers' pens were broad); a
   broader pen is left as it is. NIST did not need this step;
4. the bounding box again, area-averaged to 20x20;
5. pasted into the 28x28 at the whole-pixel shift that puts its centre of mass nearest pixel
   (14, 14), where MNIST's digits have theirs (mean 14.00, 14.01 over the training set, rows
   and columns counted from 0).

A picture with no ink, or only a speck of it, raises `NoDigit` ("no digit found").
Every step after reading the file is integer arithmetic (area weights in whole units, sums,
round-half-up divisions), so `mnist_basics/report/templates/prepare.js`, the report's copy in
JavaScript, gives the same bytes; tests/test_try_it_browser.py checks it does. No torch here:
the report imports this module.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from mnist_basics import PipelineError

SIZE, BOX = 28, 20  # the field, and the box the digit is scaled to fit
FINE = 4 * BOX  # the grid on which the pen's width is measured and widened
STROKE = 8  # MNIST's pen, in FINE pixels: the median this module's estimate gives on MNIST
CENTRE = 14  # where the centre of mass goes, in pixel indices
MIN_SIDE, MAX_SIDE = 8, 4096  # pixels; a larger header is refused before decoding
FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG"}  # MPO: the JPEG many cameras write
MIN_CONTRAST = 48  # grey levels between paper and the darkest ink; less is a blank picture
MIN_EXTENT = 20  # the ink must span at least 1/MIN_EXTENT of the picture's longer side


class NoDigit(PipelineError):
    """The picture is blank, or nearly: nothing to classify."""

    def __init__(self, message: str = "no digit found"):
        super().__init__(message)


# -- Reading ---------------------------------------------------------------------------------
def read_picture(path: Path) -> np.ndarray:
    """A PNG or JPEG file -> its grey levels, uint8 [H, W] (0 is black), upright.

    The size is checked from the header before anything is decoded; EXIF orientation is
    applied; transparent parts count as white paper.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise PipelineError(f"{path}: no such file")
    if path.is_dir():
        raise PipelineError(f"{path}: is a directory, not an image")
    try:
        with warnings.catch_warnings():
            # Pillow warns past ~89M pixels; our own limit below refuses those anyway, in one line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)  # reads the header only
        with img:
            if img.format not in FORMATS:
                raise PipelineError(f"{path}: a {img.format} image; give a PNG or JPEG")
            w, h = img.size
            if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
                raise PipelineError(
                    f"{path}: {w}x{h} pixels; each side must be {MIN_SIDE} to {MAX_SIDE}"
                )
            img.load()
            gray = to_gray(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError:  # Pillow's own guard, for headers far past ours
        raise PipelineError(
            f"{path}: too many pixels to decode safely; each side must be {MIN_SIDE} to {MAX_SIDE}"
        ) from None
    except UnidentifiedImageError:
        raise PipelineError(f"{path}: not a PNG or JPEG image") from None
    except PermissionError:
        raise PipelineError(f"{path}: permission denied") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PipelineError(f"{path}: broken image, cannot decode it ({short(e)})") from None
    return np.array(gray, dtype=np.uint8)


def to_gray(img):
    """Any PIL mode -> "L". Transparency is composited over white, as a viewer shows it.

    RGB becomes grey by Pillow's integer ITU-R 601 weights, which prepare.js repeats.
    """
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img.convert("RGBA"))
    elif img.mode.startswith("I"):  # 16- or 32-bit grey: keep the top 8 bits, don't clip
        scale = 257 if img.mode.startswith("I;16") or np.asarray(img).max() > 255 else 1
        img = Image.fromarray((np.asarray(img, dtype=np.float64) / scale).astype(np.uint8))
    return img.convert("L")


def short(e: Exception, limit: int = 300) -> str:
    """An error as one readable line: a library's message can run to pages."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."


# -- Preparing -------------------------------------------------------------------------------
def prepare(gray: np.ndarray) -> np.ndarray:
    """Grey levels uint8 [H, W], either way round -> uint8 [28, 28], light digit on dark.

    Raises NoDigit when there is no ink to speak of.
    """
    a = ink(gray)
    crop = bounding_box(a)
    if max(crop.shape) * MIN_EXTENT < max(a.shape):  # a speck, not a digit
        raise NoDigit()
    fine = area_average(crop, FINE)
    fine = dilate(fine, stroke_radius(fine))
    return centre(area_average(bounding_box(fine), BOX))


def ink(gray: np.ndarray) -> np.ndarray:
    """Grey levels -> ink uint8 [H, W]: 0 where there is paper, 255 where there is ink."""
    g = np.asarray(gray, dtype=np.uint8)
    if g.ndim != 2 or min(g.shape) < 3:
        raise NoDigit()
    b = max(1, min(g.shape) // 10)  # the border strip: paper, bar a stroke running into it
    border = np.ones(g.shape, dtype=bool)
    border[b:-b, b:-b] = False
    paper, lo, hi = median(g[border]), int(g.min()), int(g.max())
    if paper - lo > hi - paper:  # the ink is darker than the paper: flip to MNIST's way
        g, paper, hi = 255 - g, 255 - paper, 255 - lo
    contrast = hi - paper
    if contrast < MIN_CONTRAST:
        raise NoDigit()
    return levels(paper, contrast)[g]


def median(v: np.ndarray) -> int:
    """The lower median of grey levels, from their histogram."""
    counts = np.cumsum(np.bincount(v.ravel(), minlength=256))
    return int(np.searchsorted(counts * 2, v.size))  # the first level with half the values


def levels(paper: int, contrast: int) -> np.ndarray:
    """The lookup table grey level -> ink: 0 up to a quarter of the contrast above the paper,
    255 from three quarters, a linear ramp between (rounded half up)."""
    lo, hi = paper + contrast // 4, paper + (3 * contrast) // 4
    v = np.arange(256, dtype=np.int64)
    ramp = (510 * (v - lo) + (hi - lo)) // (2 * (hi - lo))
    return np.clip(ramp, 0, 255).astype(np.uint8)


def bounding_box(a: np.ndarray) -> np.ndarray:
    """The smallest rectangle of `a` holding every non-zero pixel."""
    rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
    if rows.size == 0:
        raise NoDigit()
    return a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def area_average(crop: np.ndarray, n: int) -> np.ndarray:
    """uint8 [h, w], padded to a square of side L = max(h, w), scaled to uint8 [n, n] by area
    average: each output pixel is the mean of the source area it covers.

    In units where a source pixel is n wide and an output pixel L wide, every overlap is a
    whole number, so each output pixel is the exact fraction sum(wy * wx * ink) / L², rounded
    half up. The sums stay below 2**53, so float64 matrix products compute them exactly.
    """
    h, w = crop.shape
    side = max(h, w)
    weights = overlaps(n, side)  # [n, side]
    wy = weights[:, (side - h) // 2:(side - h) // 2 + h]  # the padding is blank: skip it
    wx = weights[:, (side - w) // 2:(side - w) // 2 + w]
    num = (wy @ crop.astype(np.float64) @ wx.T).astype(np.int64)  # [n, n], exact integers
    return ((2 * num + side * side) // (2 * side * side)).astype(np.uint8)


def overlaps(n: int, side: int) -> np.ndarray:
    """overlap[j, k]: how much of source pixel k output pixel j covers, float64 [n, side]."""
    j = np.arange(n)[:, None] * side  # output pixel j spans [j*side, (j+1)*side)
    k = np.arange(side)[None, :] * n  # source pixel k spans [k*n, (k+1)*n)
    return np.clip(np.minimum(j + side, k + n) - np.maximum(j, k), 0, None).astype(np.float64)


def stroke_radius(fine: np.ndarray) -> int:
    """How far to widen the pen, in fine pixels, for its stroke to end up STROKE wide.

    The width is estimated as 2 * area / perimeter of the ink (a long stroke of width w and
    length l has area w*l and perimeter about 2*l). Widening by r on each side and scaling the
    grown box back down makes it (w + 2r) * FINE / (FINE + 2r), so
    r = FINE * (STROKE - w) / (2 * (FINE - STROKE)), rounded half up; never negative.
    """
    m = fine >= 128
    p = np.pad(m, 1)
    area = int(m.sum())
    perimeter = int((p[1:] != p[:-1]).sum() + (p[:, 1:] != p[:, :-1]).sum()) or 1
    num = FINE * (STROKE * perimeter - 2 * area)
    den = 2 * perimeter * (FINE - STROKE)
    return max(0, (2 * num + den) // (2 * den))


def dilate(a: np.ndarray, r: int) -> np.ndarray:
    """Grey dilation by a disk of radius r: each pixel the maximum within r of it.
    uint8 [h, w] -> [h + 2r, w + 2r], so nothing widened is cut off."""
    h, w = a.shape
    out = np.zeros((h + 2 * r, w + 2 * r), dtype=np.uint8)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= r * r:
                view = out[r + dy:r + dy + h, r + dx:r + dx + w]
                np.maximum(view, a, out=view)
    return out


def centre(box: np.ndarray) -> np.ndarray:
    """The 20x20 pasted into a blank 28x28 at the whole-pixel shift that brings its centre of
    mass nearest (14, 14). Ink shifted past the edge is lost, as it would be on paper."""
    v = box.astype(np.int64)
    mass = int(v.sum())
    if mass == 0:  # ink so faint and sparse that the average rounds it all away
        raise NoDigit()
    i = np.arange(BOX)
    dy = shift(int((v.sum(1) * i).sum()), mass)
    dx = shift(int((v.sum(0) * i).sum()), mass)
    out = np.zeros((SIZE, SIZE), dtype=np.uint8)
    ys, xs = slice(max(0, dy), min(SIZE, dy + BOX)), slice(max(0, dx), min(SIZE, dx + BOX))
    out[ys, xs] = box[ys.start - dy:ys.stop - dy, xs.start - dx:xs.stop - dx]
    return out


def shift(moment: int, mass: int) -> int:
    """round(CENTRE - moment/mass), half up, in integers: where the box's row 0 goes."""
    return (2 * (CENTRE * mass - moment) + mass) // (2 * mass)
