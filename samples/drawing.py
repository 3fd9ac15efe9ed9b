"""Test-pattern pictures for the sample generator, drawn with numpy straight into YUV 4:2:0.

Everything here is a pure function of its arguments (no fonts from the system, no ffmpeg
filters), so a given frame number always produces the same pixels on every machine: that is
what makes the generated samples byte-identical from run to run.

A frame shows, from top to bottom:

* a *frame barcode*: :data:`BARCODE_BITS` black/white cells holding the frame number in
  binary (most significant bit first), so tests and browser screenshots can read exactly which
  frame is on screen;
* diagonal luma stripes that scroll every frame over static colour bars (chroma), so motion and
  colour are visible at a glance and the encoder has real work to do;
* a dark panel with the rendition name, a big clock ``MM:SS.FF`` and the frame/segment numbers;
* a bar along the bottom that fills up over each segment (GOP), so a switch or a stall at a
  segment boundary is obvious in a screenshot.

Frames are returned as ``(height * 3 // 2, width)`` uint8 arrays, the layout that
``av.VideoFrame.from_ndarray(..., format="yuv420p")`` takes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache

import numpy as np

log = logging.getLogger(__name__)

#: Number of cells in the frame barcode: enough for 2**20 frames (9.7 hours at 30 fps).
BARCODE_BITS = 20

#: Studio-range luma levels (ITU-R BT.601/709): what H.264 decoders and players expect.
Y_BLACK, Y_WHITE = 16, 235
#: Neutral chroma (no colour).
C_NEUTRAL = 128

GLYPH_WIDTH, GLYPH_HEIGHT = 5, 7

# A 5x7 bitmap font. Lowercase letters that are not listed fall back to their uppercase glyph;
# anything else unknown is drawn as "?".
_FONT_ROWS: dict[str, tuple[str, ...]] = {
    " ": (".....", ".....", ".....", ".....", ".....", ".....", "....."),
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "k": ("#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."),
    "p": (".....", ".....", "####.", "#...#", "####.", "#....", "#...."),
    "s": (".....", ".....", ".####", "#....", ".###.", "....#", "####."),
    "x": (".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"),
    ":": (".....", "..#..", "..#..", ".....", "..#..", "..#..", "....."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    ",": (".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "_": (".....", ".....", ".....", ".....", ".....", ".....", "#####"),
    "/": ("....#", "....#", "...#.", "..#..", ".#...", "#....", "#...."),
    "@": (".###.", "#...#", "#.###", "#.#.#", "#.###", "#....", ".###."),
    "#": (".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."),
    "?": (".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."),
}


def glyph(char: str) -> np.ndarray:
    """The 7x5 boolean bitmap of ``char`` (fallbacks: uppercase, then ``?``)."""
    return _glyph(_resolve(char))


def _resolve(char: str) -> str:
    if char in _FONT_ROWS:
        return char
    return char.upper() if char.upper() in _FONT_ROWS else "?"


@cache
def _glyph(char: str) -> np.ndarray:
    rows = _FONT_ROWS[char]
    bitmap = np.array([[c == "#" for c in row] for row in rows], dtype=bool)
    bitmap.setflags(write=False)
    return bitmap


@cache
def _scaled_glyph(char: str, scale: int) -> np.ndarray:
    scaled = np.kron(_glyph(char), np.ones((scale, scale), dtype=bool))
    scaled.setflags(write=False)
    return scaled


def text_size(text: str, scale: int) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` drawn at ``scale`` (one blank column per glyph)."""
    return len(text) * (GLYPH_WIDTH + 1) * scale, GLYPH_HEIGHT * scale


def draw_text(plane: np.ndarray, text: str, x: int, y: int, scale: int, value: int) -> None:
    """Set the pixels of ``text`` in ``plane`` (a 2-D uint8 array) to ``value``, clipped."""
    step = (GLYPH_WIDTH + 1) * scale
    height, width = plane.shape
    for i, char in enumerate(text):
        bitmap = _scaled_glyph(_resolve(char), scale)
        left, top = x + i * step, y
        # Clip the glyph to the plane so text near an edge never raises.
        x0, y0 = max(left, 0), max(top, 0)
        x1 = min(left + bitmap.shape[1], width)
        y1 = min(top + bitmap.shape[0], height)
        if x1 <= x0 or y1 <= y0:
            continue
        region = plane[y0:y1, x0:x1]
        region[bitmap[y0 - top : y1 - top, x0 - left : x1 - left]] = value


def encode_barcode(plane: np.ndarray, number: int) -> None:
    """Write ``number`` as :data:`BARCODE_BITS` black/white cells across the top of ``plane``."""
    height, width = plane.shape
    cell_w, cell_h = barcode_cell(width, height)
    for bit in range(BARCODE_BITS):
        on = (number >> (BARCODE_BITS - 1 - bit)) & 1
        plane[:cell_h, bit * cell_w : (bit + 1) * cell_w] = Y_WHITE if on else Y_BLACK


def decode_barcode(luma: np.ndarray) -> int:
    """Read back the number written by :func:`encode_barcode` from a (decoded) luma plane.

    Samples the middle of each cell, so it survives lossy compression at any sane bitrate.
    """
    height, width = luma.shape
    cell_w, cell_h = barcode_cell(width, height)
    number = 0
    for bit in range(BARCODE_BITS):
        centre = luma[
            cell_h // 4 : cell_h - cell_h // 4,
            bit * cell_w + cell_w // 4 : (bit + 1) * cell_w - cell_w // 4,
        ]
        number = (number << 1) | int(centre.mean() > (Y_BLACK + Y_WHITE) / 2)
    return number


def barcode_cell(width: int, height: int) -> tuple[int, int]:
    """(width, height) of one barcode cell for a picture of the given size."""
    return width // BARCODE_BITS, max(4, height // 16)


# Colour bars (75 % SMPTE-like) as (U, V) pairs: white, yellow, cyan, green, magenta, red, blue,
# black. Only chroma is used; luma comes from the moving stripes.
_BAR_CHROMA = (
    (128, 128),
    (44, 136),
    (156, 44),
    (72, 58),
    (184, 198),
    (100, 212),
    (212, 114),
    (128, 128),
)

#: Horizontal scroll of the luma stripes, in pixels per frame at 720p (scaled with width).
_SCROLL_AT_720P = 6


@dataclass
class FramePainter:
    """Draws the frames of one rendition. Build once per rendition, then call :meth:`frame`.

    The static parts (colour bars, the stripe texture) are precomputed, so drawing a 720p
    frame costs a couple of array copies plus the text, well under the encoder's time.
    """

    width: int
    """Picture width in pixels (even)."""
    height: int
    """Picture height in pixels (even)."""
    fps: int
    """Frames per second, used to turn frame numbers into a clock."""
    frames_per_segment: int
    """Frames in one segment (the GOP length), for the segment number and progress bar."""
    label: str
    """Text at the top of the panel, typically the rendition name ("720p")."""
    _stripes: np.ndarray = field(init=False, repr=False)
    _chroma: np.ndarray = field(init=False, repr=False)
    _period: int = field(init=False, repr=False)
    _scroll: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or self.width < 32 or self.height < 32:
            raise ValueError(
                f"picture size must be even and at least 32x32, got {self.width}x{self.height}"
            )
        self._period = max(16, self.width // 8)
        self._scroll = max(1, round(_SCROLL_AT_720P * self.width / 1280))
        self._stripes = self._make_stripes()
        self._chroma = self._make_chroma()

    def _make_stripes(self) -> np.ndarray:
        # Wide enough that any horizontal offset in [0, period) leaves a full picture to slice.
        cols = np.arange(self.width + self._period)[None, :]
        rows = np.arange(self.height)[:, None]
        phase = ((cols + rows) % self._period) / self._period
        # Triangle wave: soft diagonal stripes, cheap for the encoder to predict when they move.
        tri = 1.0 - np.abs(2.0 * phase - 1.0)
        return (Y_BLACK + 40 + tri * 140).astype(np.uint8)

    def _make_chroma(self) -> np.ndarray:
        cw, ch = self.width // 2, self.height // 2
        bar = np.minimum(np.arange(cw) * len(_BAR_CHROMA) // cw, len(_BAR_CHROMA) - 1)
        table = np.array(_BAR_CHROMA, dtype=np.uint8)
        u = np.broadcast_to(table[bar, 0], (ch, cw))
        v = np.broadcast_to(table[bar, 1], (ch, cw))
        planes = [u.copy(), v.copy()]
        # Neutral chroma under the barcode and the segment bar: black/white, easy to read back.
        _, cell_h = barcode_cell(self.width, self.height)
        bar_h = _segment_bar_height(self.height)
        for plane in planes:
            plane[: (cell_h + 1) // 2] = C_NEUTRAL
            plane[ch - (bar_h + 1) // 2 :] = C_NEUTRAL
        return np.concatenate(planes).reshape(-1, self.width)

    def frame(self, index: int) -> np.ndarray:
        """The picture of frame ``index`` as a ``(height * 3 // 2, width)`` yuv420p array."""
        w, h = self.width, self.height
        out = np.empty((h * 3 // 2, w), dtype=np.uint8)
        luma = out[:h]
        offset = (index * self._scroll) % self._period
        luma[:] = self._stripes[:, self._period - offset : self._period - offset + w]
        chroma = out[h:]
        chroma[:] = self._chroma
        self._draw_panel(out, index)
        self._draw_segment_bar(luma, index)
        encode_barcode(luma, index)
        return out

    def _draw_panel(self, out: np.ndarray, index: int) -> None:
        w, h = self.width, self.height
        seconds, sub = divmod(index, self.fps)
        clock = f"{seconds // 60:02d}:{seconds % 60:02d}.{sub:02d}"
        info = f"F {index:06d} S {index // self.frames_per_segment:05d}"
        big = max(1, (w * 7 // 10) // text_size(clock, 1)[0])
        small = max(1, big // 3)
        lines = ((self.label, small), (clock, big), (info, small))
        gap = max(1, small * 2)
        panel_h = sum(text_size(t, s)[1] for t, s in lines) + gap * (len(lines) + 1)
        panel_w = max(text_size(t, s)[0] for t, s in lines) + gap * 2
        left, top = max(0, (w - panel_w) // 2), max(0, (h - panel_h) // 2)
        luma = out[:h]
        luma[top : top + panel_h, left : left + panel_w] = Y_BLACK + 8
        # Neutral chroma under the panel so the text reads white on grey, not on colour.
        c_top, c_bottom, c_left, c_right = top // 2, (top + panel_h + 1) // 2, left, left + panel_w
        u_plane = out[h:].reshape(h, w // 2)[: h // 2]
        v_plane = out[h:].reshape(h, w // 2)[h // 2 :]
        for plane in (u_plane, v_plane):
            plane[c_top:c_bottom, c_left // 2 : (c_right + 1) // 2] = C_NEUTRAL
        y = top + gap
        for text, scale in lines:
            tw, th = text_size(text, scale)
            draw_text(luma, text, left + (panel_w - tw) // 2, y, scale, Y_WHITE)
            y += th + gap

    def _draw_segment_bar(self, luma: np.ndarray, index: int) -> None:
        h, w = luma.shape
        bar_h = _segment_bar_height(h)
        filled = (index % self.frames_per_segment + 1) * w // self.frames_per_segment
        luma[h - bar_h :, :filled] = Y_WHITE
        luma[h - bar_h :, filled:] = Y_BLACK


def _segment_bar_height(height: int) -> int:
    return max(2, height // 40)
