"""Where the checked-in test vectors live: ``shared/vectors`` beside the repository checkout."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors"


def load(relative: str) -> Any:
    """Parse one JSON vector file, e.g. ``load("bip174/valid.json")``."""
    with open(VECTORS / relative, encoding="utf-8") as fh:
        return json.load(fh)


def case_id(text: str, limit: int = 80) -> str:
    """A pytest id from a vector's own description."""
    return text if len(text) <= limit else text[:limit - 3] + "..."
