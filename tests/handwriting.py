"""Handwritten-looking 3s and 7s that are not MNIST: pen strokes in dark ink on white paper.

    python -m tests.handwriting --models-dir models     # each model's accuracy on them
    python -m tests.handwriting --models-dir models --cropped   # ... cropped to the digit
    python -m tests.handwriting --write pictures --count 10   # 20 of them as PNGs
    python -m tests.handwriting --examples examples           # the README's examples/

Each digit is one of a few ways people write a 3 or a 7 (a round 3, a flat-topped 3, a 7 with
a tick, with a crossbar ...), drawn as strokes through key points. Every picture gets its own
jitter of the key points, width, slant, tilt, stroke width, size and place on a page of its
own size, paper and ink shade, lighting and noise. Nothing here comes from MNIST, so it tells
how the models read digits they never saw the like of. `sample` is deterministic per seed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Point = tuple[float, float]
# Key points in a box about 0.7 wide and 1 tall (x right, y down). A stroke is drawn as a
# smooth curve through its points; strokes meet at corners, as a pen that stops and turns.
STYLES: dict[str, tuple[int, list[list[Point]]]] = {
    "3 round": (3, [[(0.05, 0.2), (0.3, 0.02), (0.6, 0.1), (0.62, 0.3), (0.33, 0.47)],
                    [(0.33, 0.47), (0.65, 0.6), (0.68, 0.84), (0.42, 1.0), (0.05, 0.86)]]),
    "3 one stroke": (3, [[(0.08, 0.15), (0.35, 0.0), (0.62, 0.15), (0.5, 0.38), (0.3, 0.48),
                          (0.55, 0.56), (0.68, 0.8), (0.45, 0.99), (0.1, 0.9)]]),
    "3 flat top": (3, [[(0.05, 0.03), (0.66, 0.02)], [(0.66, 0.02), (0.3, 0.42)],
                       [(0.3, 0.42), (0.62, 0.52), (0.68, 0.78), (0.44, 0.99), (0.06, 0.9)]]),
    "3 narrow": (3, [[(0.1, 0.12), (0.35, 0.0), (0.55, 0.18), (0.28, 0.45)],
                     [(0.28, 0.45), (0.58, 0.66), (0.4, 1.0), (0.08, 0.9)]]),
    "7 plain": (7, [[(0.02, 0.05), (0.68, 0.03)], [(0.68, 0.03), (0.45, 0.45), (0.3, 1.0)]]),
    "7 straight": (7, [[(0.04, 0.02), (0.7, 0.02)], [(0.7, 0.02), (0.22, 1.0)]]),
    "7 tick": (7, [[(0.02, 0.24), (0.03, 0.04)], [(0.03, 0.04), (0.68, 0.05)],
                   [(0.68, 0.05), (0.4, 0.55), (0.32, 1.0)]]),
    "7 crossbar": (7, [[(0.03, 0.04), (0.7, 0.03)], [(0.7, 0.03), (0.42, 0.5), (0.3, 1.0)],
                       [(0.22, 0.55), (0.66, 0.5)]]),
}


@dataclass(frozen=True)
class Digit:
    """One drawn digit: its strokes as dense polylines, scaled to height 1, top-left at 0."""

    label: int  # 3 or 7
    strokes: tuple[np.ndarray, ...]  # each float [K, 2] of (x, y)

    @property
    def width(self) -> float:
        return max(float(s[:, 0].max()) for s in self.strokes)


def catmull_rom(points: np.ndarray, steps: int = 16) -> np.ndarray:
    """A smooth curve through the key points [N, 2] -> [(N-1)*steps + 1, 2]."""
    if len(points) < 3:
        t = np.linspace(0, 1, steps + 1)[:, None]
        return points[0] + t * (points[-1] - points[0])
    p = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    t = np.linspace(0, 1, steps, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (3 * p1 - p0 - 3 * p2 + p3) * t**3))
    return np.vstack([*out, points[-1:]])


def digit(style: str, rng: np.random.Generator | None = None) -> Digit:
    """A digit in `style`; with `rng`, its own jitter, width, slant and tilt."""
    label, keys = STYLES[style]
    strokes = [np.array(s, dtype=np.float64) for s in keys]
    if rng is not None:
        # Corners are shared points: jitter each distinct point once so strokes stay joined.
        uniq = {p for s in keys for p in s}
        moved = {p: np.array(p) + rng.normal(0, 0.04, 2) for p in sorted(uniq)}
        strokes = [np.array([moved[p] for p in s]) for s in keys]
        aspect, slant = rng.uniform(0.65, 1.35), rng.uniform(-0.45, 0.45)
        tilt = math.radians(rng.uniform(-15, 15))
        rot = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])
        strokes = [np.column_stack([s[:, 0] * aspect + slant * (1 - s[:, 1]), s[:, 1]]) @ rot.T
                   for s in strokes]
    dense = [catmull_rom(s) for s in strokes]
    lo = np.min([s.min(0) for s in dense], axis=0)
    height = max(float(s[:, 1].max()) for s in dense) - lo[1]
    return Digit(label, tuple((s - lo) / height for s in dense))


def render(d: Digit, page: tuple[int, int] = (280, 280), *, height: float = 200,
           at: Point = (40, 40), width: float = 20, paper: float = 255, ink: float = 0,
           light: float = 0, noise: float = 0, rng: np.random.Generator | None = None
           ) -> np.ndarray:
    """The digit drawn on a page of (width, height) pixels -> grey uint8 [H, W].

    `height` is the digit's height and `at` its top-left corner, in pixels; `width` the pen's.
    `light` darkens the page from one side to the other by that many levels; `noise` is the
    grain's standard deviation. Drawn 4x larger and averaged down, for anti-aliased edges.
    """
    from PIL import Image, ImageDraw

    k = 4
    mask = Image.new("L", (page[0] * k, page[1] * k), 0)
    draw = ImageDraw.Draw(mask)
    r = max(width * k / 2, 1)
    for s in d.strokes:
        pts = [((at[0] + x * height) * k, (at[1] + y * height) * k) for x, y in s]
        draw.line(pts, fill=255, width=round(2 * r), joint="curve")
        for x, y in (pts[0], pts[-1]):  # round pen ends
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    cover = np.asarray(mask.reduce(k), dtype=np.float64) / 255
    h, w = cover.shape
    shade = paper - light * np.linspace(0, 1, w)[None, :] * np.ones((h, 1))
    out = shade - cover * (shade - ink)
    if noise and rng is not None:
        out = out + rng.normal(0, noise, out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def sample(per_digit: int = 150, seed: int = 0, cropped: bool = False
           ) -> list[tuple[np.ndarray, int]]:
    """per_digit pictures of a 3 and as many of a 7, shuffled: [(grey uint8 [H, W], digit)].

    `cropped`: each on a square page it fills, centred, as a photo cropped to the digit.
    """
    rng = np.random.default_rng(seed)
    threes = [s for s, (label, _) in STYLES.items() if label == 3]
    sevens = [s for s, (label, _) in STYLES.items() if label == 7]
    styles = [threes[i % len(threes)] for i in range(per_digit)]
    styles += [sevens[i % len(sevens)] for i in range(per_digit)]
    rng.shuffle(styles)
    return [(picture(digit(s, rng), rng, cropped), STYLES[s][0]) for s in styles]


def picture(d: Digit, rng: np.random.Generator, cropped: bool = False) -> np.ndarray:
    """`d` on a page of random size, at a random size and place (`cropped`: centred on a
    square page it fills), with random pen and paper; half of them through a scanner's blur,
    half saved as JPEG."""
    import io

    from PIL import Image, ImageFilter

    pw, ph = (int(v) for v in rng.integers(48, 400, 2))
    if cropped:
        ph = pw
    height = (0.8 if cropped else rng.uniform(0.3, 0.85)) * min(pw, ph)
    height = min(height, 0.95 * pw / max(d.width, 0.3))  # the whole digit fits the page
    x = rng.uniform(0, max(pw - d.width * height, 1))
    y = rng.uniform(0, ph - height)
    if cropped:
        x, y = (pw - d.width * height) / 2, (ph - height) / 2
    g = render(d, (pw, ph), height=height, at=(x, y),
               width=max(1.2, rng.uniform(0.035, 0.14) * height),
               paper=rng.uniform(200, 255), ink=rng.uniform(0, 90),
               light=rng.uniform(0, 20), noise=rng.uniform(0, 5), rng=rng)
    img = Image.fromarray(g)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.02 * height)))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(rng.integers(40, 95)))
        img = Image.open(buf)
    return np.array(img.convert("L"), dtype=np.uint8)


def examples() -> dict[str, np.ndarray]:
    """A few clean pictures for the README's predict example: file name -> grey [H, W]."""
    rng = np.random.default_rng(2024)
    out = {}
    for name, style, height, pen in (("three.png", "3 round", 140, 11),
                                     ("three_flat_top.png", "3 flat top", 110, 8),
                                     ("seven.png", "7 plain", 160, 12),
                                     ("seven_crossbar.png", "7 crossbar", 150, 7)):
        d = digit(style, rng)
        margin = 2 * pen + 10
        page = (round(d.width * height) + 2 * margin, height + 2 * margin)
        out[name] = render(d, page, height=height, at=(margin, margin), width=pen,
                           paper=245, ink=25)
    return out


def pad_and_resize(gray: np.ndarray) -> np.ndarray:
    """How predict prepared a picture before it followed MNIST's procedure (for comparison
    only): flipped if dark on light, padded to a square, Lanczos-resized to 28x28."""
    from PIL import Image, ImageOps

    img = Image.fromarray(gray)
    a = gray.astype(np.float32)
    b = max(1, min(a.shape) // 10)
    border = np.ones_like(a, dtype=bool)
    border[b:-b, b:-b] = False
    if a[border].mean() > a[~border].mean():
        img, a = ImageOps.invert(img), 255 - a
    square = ImageOps.pad(img, (28, 28), method=Image.Resampling.LANCZOS,
                          color=round(a[border].mean()))
    return np.array(square, dtype=np.uint8)


def accuracy(predict: Callable[[np.ndarray], np.ndarray], xs: np.ndarray,
             labels: Sequence[int]) -> dict[str, float]:
    """Accuracy of `predict` (uint8 [N, 28, 28] -> prob3 [N]) on all, on 3s, on 7s."""
    is3 = np.asarray(labels) == 3
    right = (np.asarray(predict(xs)) > 0.5) == is3
    return {"all": float(right.mean()), "3s": float(right[is3].mean()),
            "7s": float(right[~is3].mean())}


def table(models_dir: Path, per_digit: int = 150, seed: int = 0, cropped: bool = False
          ) -> list[dict[str, object]]:
    """Each model's accuracy on `sample(per_digit, seed, cropped)`, prepared before and now."""
    import torch

    from mnist_basics.pipeline.definition import METHODS
    from mnist_basics.predict.predict import load_model
    from mnist_basics.predict.prepare import prepare

    pictures = sample(per_digit, seed, cropped)
    labels = [label for _, label in pictures]
    before = np.stack([pad_and_resize(g) for g, _ in pictures])
    after = np.stack([prepare(g) for g, _ in pictures])
    rows = []
    for name in METHODS:
        model = load_model(name, models_dir)

        def predict(x: np.ndarray, model=model) -> np.ndarray:
            with torch.inference_mode():
                probs = model.predict(torch.from_numpy(x)).float().numpy()
            return probs[:, model.names.index("3")]  # the probability of a 3

        was, now = accuracy(predict, before, labels), accuracy(predict, after, labels)
        rows.append({"model": name, "before": was["all"], "after": now["all"],
                     "after_3s": now["3s"], "after_7s": now["7s"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.handwriting", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    ap.add_argument("--count", type=int, default=150, help="pictures of each digit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cropped", action="store_true",
                    help="each digit centred on a square page it fills, as a cropped photo")
    ap.add_argument("--write", type=Path, metavar="DIR",
                    help="write the pictures as PNGs into DIR instead of scoring them")
    ap.add_argument("--examples", type=Path, metavar="DIR",
                    help="write the README's example pictures into DIR (examples/)")
    args = ap.parse_args(argv)
    if args.write or args.examples:
        from PIL import Image

        folder = args.write or args.examples
        folder.mkdir(parents=True, exist_ok=True)
        pictures = (examples() if args.examples else
                    {f"{label}_{i:03d}.png": g
                     for i, (g, label) in enumerate(sample(args.count, args.seed))})
        for name, g in pictures.items():
            Image.fromarray(g).save(folder / name, optimize=True)
        return
    rows = table(args.models_dir, args.count, args.seed, args.cropped)
    kind = "cropped pictures" if args.cropped else "pictures"
    print(f"{2 * args.count} {kind} (seed {args.seed}), accuracy:")
    print("| model | before | after | after, 3s | after, 7s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['before']:.3f} | {r['after']:.3f} | {r['after_3s']:.3f} "
              f"| {r['after_7s']:.3f} |")


if __name__ == "__main__":
    main()
