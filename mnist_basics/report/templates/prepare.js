/* A picture of a digit prepared the way MNIST was made: mnist_basics/predict/prepare.py in JavaScript,
   for the report's "Try it" panel. The same steps in the same integer arithmetic, so it gives
   the same bytes (tests/test_try_it_browser.py checks it on many pictures):

     var gray = mnistPrepare.gray(ctx.getImageData(0, 0, w, h).data);  // RGBA -> grey levels
     var x = mnistPrepare.prepare(gray, w, h);  // Uint8Array(784), light on dark; null: blank

   1. ink: the paper is the border strip's median; dark ink is flipped to light on dark; the
      levels a quarter to three quarters of the way from paper to ink ramp to 0..255;
   2. the ink's bounding box, padded to a square, area-averaged to the 80x80 fine grid;
   3. a pen thinner than MNIST's is widened there (grey dilation by a disk);
   4. the bounding box again, area-averaged to 20x20;
   5. pasted into the 28x28 at the whole-pixel shift that puts its centre of mass nearest
      (14, 14).
   Every number stays an integer below 2**53, where doubles are exact. */
(function (root) {
  "use strict";

  var SIZE = 28, BOX = 20, FINE = 4 * BOX, STROKE = 8, CENTRE = 14;
  var MIN_CONTRAST = 48, MIN_EXTENT = 20;

  // RGBA bytes -> grey levels, with Pillow's integer ITU-R 601 weights (its convert("L")).
  // Alpha is not looked at: the panel's canvas is opaque.
  function gray(rgba) {
    var n = rgba.length >> 2, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) {
      var j = i << 2;
      out[i] = (rgba[j] * 19595 + rgba[j + 1] * 38470 + rgba[j + 2] * 7471 + 0x8000) >> 16;
    }
    return out;
  }

  // An image: {data: Uint8Array of h * w, h, w}.
  function ink(g, w, h) {
    if (Math.min(w, h) < 3) return null;
    var b = Math.max(1, Math.floor(Math.min(w, h) / 10));
    var hist = new Float64Array(256), n = 0, lo = 255, hi = 0, x, y, v;
    for (y = 0; y < h; y++) {
      for (x = 0; x < w; x++) {
        v = g[y * w + x];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
        if (y < b || y >= h - b || x < b || x >= w - b) { hist[v]++; n++; }
      }
    }
    var paper = 0, seen = hist[0];
    while (seen * 2 < n) seen += hist[++paper];  // the lower median
    var flip = paper - lo > hi - paper;  // the ink is darker than the paper
    if (flip) { paper = 255 - paper; hi = 255 - lo; }
    var contrast = hi - paper;
    if (contrast < MIN_CONTRAST) return null;
    var a = paper + Math.floor(contrast / 4), c = paper + Math.floor(3 * contrast / 4);
    var lut = new Uint8Array(256);
    for (v = 0; v < 256; v++) {
      var ramp = Math.floor((510 * (v - a) + (c - a)) / (2 * (c - a)));
      lut[v] = ramp < 0 ? 0 : ramp > 255 ? 255 : ramp;
    }
    var out = new Uint8Array(w * h);
    for (var i = 0; i < w * h; i++) out[i] = lut[flip ? 255 - g[i] : g[i]];
    return {data: out, h: h, w: w};
  }

  function boundingBox(img) {
    var top = img.h, bottom = -1, left = img.w, right = -1, x, y;
    for (y = 0; y < img.h; y++) {
      for (x = 0; x < img.w; x++) {
        if (img.data[y * img.w + x]) {
          if (y < top) top = y;
          if (y > bottom) bottom = y;
          if (x < left) left = x;
          if (x > right) right = x;
        }
      }
    }
    if (bottom < 0) return null;
    var h = bottom - top + 1, w = right - left + 1, out = new Uint8Array(h * w);
    for (y = 0; y < h; y++) {
      for (x = 0; x < w; x++) out[y * w + x] = img.data[(top + y) * img.w + left + x];
    }
    return {data: out, h: h, w: w};
  }

  // How much of source pixel k (padded) output pixel j covers, in units where a source
  // pixel is n wide and an output pixel `side` wide.
  function overlap(j, k, n, side) {
    var o = Math.min((j + 1) * side, (k + 1) * n) - Math.max(j * side, k * n);
    return o > 0 ? o : 0;
  }

  // Padded to a square of side L, scaled to n x n by area average, rounded half up.
  function areaAverage(img, n) {
    var h = img.h, w = img.w, side = Math.max(h, w);
    var oy = Math.floor((side - h) / 2), ox = Math.floor((side - w) / 2);
    var rows = new Float64Array(h * n), x, y, j, k;
    for (x = 0; x < w; x++) {  // along each row: source column x, padded k = x + ox
      k = x + ox;
      var j0 = Math.floor(k * n / side), j1 = Math.floor(((k + 1) * n - 1) / side);
      for (j = j0; j <= j1; j++) {
        var o = overlap(j, k, n, side);
        if (o) for (y = 0; y < h; y++) rows[y * n + j] += o * img.data[y * w + x];
      }
    }
    var num = new Float64Array(n * n);
    for (y = 0; y < h; y++) {  // then down each column
      k = y + oy;
      var i0 = Math.floor(k * n / side), i1 = Math.floor(((k + 1) * n - 1) / side);
      for (var i = i0; i <= i1; i++) {
        var oo = overlap(i, k, n, side);
        if (oo) for (j = 0; j < n; j++) num[i * n + j] += oo * rows[y * n + j];
      }
    }
    var d = side * side, out = new Uint8Array(n * n);
    for (j = 0; j < n * n; j++) out[j] = Math.floor((2 * num[j] + d) / (2 * d));
    return {data: out, h: n, w: n};
  }

  // How far to widen the pen, in fine pixels (see stroke_radius in prepare.py).
  function strokeRadius(img) {
    var n = img.w, area = 0, perimeter = 0, x, y;
    function on(yy, xx) {
      return yy >= 0 && yy < n && xx >= 0 && xx < n && img.data[yy * n + xx] >= 128;
    }
    for (y = 0; y < n; y++) {
      for (x = 0; x < n; x++) {
        if (!on(y, x)) continue;
        area++;
        perimeter += !on(y - 1, x) + !on(y + 1, x) + !on(y, x - 1) + !on(y, x + 1);
      }
    }
    perimeter = perimeter || 1;
    var num = FINE * (STROKE * perimeter - 2 * area), den = 2 * perimeter * (FINE - STROKE);
    return Math.max(0, Math.floor((2 * num + den) / (2 * den)));
  }

  // Grey dilation by a disk of radius r, the image growing by r on every side.
  function dilate(img, r) {
    if (r === 0) return img;
    var h = img.h, w = img.w, W = w + 2 * r, out = new Uint8Array((h + 2 * r) * W);
    for (var dy = -r; dy <= r; dy++) {
      for (var dx = -r; dx <= r; dx++) {
        if (dy * dy + dx * dx > r * r) continue;
        for (var y = 0; y < h; y++) {
          var row = (r + dy + y) * W + r + dx;
          for (var x = 0; x < w; x++) {
            var v = img.data[y * w + x];
            if (v > out[row + x]) out[row + x] = v;
          }
        }
      }
    }
    return {data: out, h: h + 2 * r, w: W};
  }

  // round(CENTRE - moment / mass), half up.
  function shift(moment, mass) {
    return Math.floor((2 * (CENTRE * mass - moment) + mass) / (2 * mass));
  }

  function centre(box) {
    var mass = 0, my = 0, mx = 0, x, y, v;
    for (y = 0; y < BOX; y++) {
      for (x = 0; x < BOX; x++) {
        v = box.data[y * BOX + x];
        mass += v; my += y * v; mx += x * v;
      }
    }
    if (mass === 0) return null;
    var dy = shift(my, mass), dx = shift(mx, mass), out = new Uint8Array(SIZE * SIZE);
    for (y = 0; y < BOX; y++) {
      for (x = 0; x < BOX; x++) {
        var ty = y + dy, tx = x + dx;
        if (ty >= 0 && ty < SIZE && tx >= 0 && tx < SIZE) out[ty * SIZE + tx] = box.data[y * BOX + x];
      }
    }
    return out;
  }

  // Grey levels (h * w, row by row, either way round) -> Uint8Array(784), or null: no digit.
  function prepare(g, w, h) {
    var a = ink(g, w, h);
    if (!a) return null;
    var crop = boundingBox(a);
    if (!crop || Math.max(crop.h, crop.w) * MIN_EXTENT < Math.max(h, w)) return null;
    var fine = areaAverage(crop, FINE);
    fine = boundingBox(dilate(fine, strokeRadius(fine)));
    return fine ? centre(areaAverage(fine, BOX)) : null;
  }

  var api = {SIZE: SIZE, gray: gray, prepare: prepare};
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.mnistPrepare = api;
})(this);
