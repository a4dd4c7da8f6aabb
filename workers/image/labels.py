"""Zero-shot tag vocabulary: groups of labels, each with prompt templates.

A picture gets the most likely label of each group (shape, colour, ...), scored by CLIP against the
group's prompts; a label's text embedding is the mean over its templates (prompt ensembling, as in
the CLIP paper). Operators replace the vocabulary with a JSON file (`MMSTREAM_IMAGE_LABELS_FILE`):
`{"groups": [{"name": ..., "labels": [...], "templates": ["a photo of a {}.", ...]}]}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workers.image.vocabulary import BACKGROUNDS, COLOURS, SHAPES, SIZES


@dataclass(frozen=True)
class LabelGroup:
    name: str
    labels: tuple[str, ...]
    templates: tuple[str, ...]  # each holds "{}" where the label goes

    def prompts(self, label: str) -> list[str]:
        return [t.format(label) for t in self.templates]


def _shape_templates() -> tuple[str, ...]:
    return ("a photo of a {}.", "a picture of a {}.", "an image showing a {}.", "{}.")


def _colour_templates() -> tuple[str, ...]:
    return ("a photo of something {}.", "a {} shape.", *(f"a photo of a {{}} {s}." for s in SHAPES))


DEFAULT_GROUPS: tuple[LabelGroup, ...] = (
    LabelGroup("shape", SHAPES, _shape_templates()),
    LabelGroup("colour", tuple(COLOURS), _colour_templates()),
    LabelGroup(
        "count",
        ("one", "two", "three"),
        tuple(f"a photo of {{}} {s}s." for s in ("circle", "square")) + ("a photo of {} shapes.",),
    ),
    LabelGroup("size", tuple(SIZES), tuple(f"a photo of a {{}} {s}." for s in SHAPES)),
    LabelGroup(
        "background", tuple(BACKGROUNDS), ("a photo of a shape on a {} background.", "a picture on a {} background.")
    ),
)


def load_groups(path: Path | None) -> tuple[LabelGroup, ...]:
    if path is None:
        return DEFAULT_GROUPS
    data = json.loads(path.read_text())
    groups = tuple(
        LabelGroup(g["name"], tuple(g["labels"]), tuple(g.get("templates", ["a photo of a {}."])))
        for g in data["groups"]
    )
    for g in groups:
        if not g.labels or any("{}" not in t for t in g.templates):
            raise ValueError(f"label group {g.name!r} needs labels and templates with '{{}}'")
    return groups
