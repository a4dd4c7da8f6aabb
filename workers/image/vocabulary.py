"""What our pictures are made of: shapes, colours, sizes, positions, counts and backgrounds.

The default zero-shot labels (`labels.py`) name them, and the training data (`training/synthetic.py`)
draws them, so both read them from here.
"""

from __future__ import annotations

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 20),
    "orange": (245, 130, 20),
    "purple": (130, 50, 170),
    "pink": (240, 120, 180),
    "black": (20, 20, 20),
}
SIZES = {"small": 0.16, "medium": 0.26, "large": 0.38}
POSITIONS = {"left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27), "bottom": (0.5, 0.73), "center": (0.5, 0.5)}
COUNTS = {1: "one", 2: "two", 3: "three"}
BACKGROUNDS = {
    "white": (250, 250, 250),
    "gray": (170, 170, 170),
    "beige": (235, 222, 195),
    "light blue": (200, 225, 245),
}
