"""Tiny files and datasets for the data-layer tests (a plain module, not a conftest)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage


def png(path: Path, colour: tuple[int, ...], mode: str = "RGB", size: int = 8) -> Path:
    """Write a one-colour PNG (creating folders) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new(mode, (size, size), colour).save(path)
    return path


def png_bytes(colour: tuple[int, int, int] = (9, 9, 9), size: int = 8) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def image_folder(root: Path, n: int = 6) -> Path:
    """``root/imgs/0.png`` ... ``{n-1}.png`` (red ramps) and ``root/imgs/rgba.png``."""
    for i in range(n):
        png(root / "imgs" / f"{i}.png", (40 * i, 0, 0))
    png(root / "imgs" / "rgba.png", (0, 0, 255, 128), mode="RGBA")
    return root


def hf_cache(tmp_path: Path) -> dict[str, str]:
    """``load_dataset`` options that keep its cache inside the test's folder."""
    return {"cache_dir": str(tmp_path / "hf-cache")}


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A csv with a header row; ``None`` becomes an empty cell."""
    header = list(rows[0])
    lines = [",".join(header)] + [",".join("" if r[h] is None else str(r[h]) for h in header)
                                  for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def in_memory(**overrides: Any) -> DatasetDict:
    """Four rows: image, text, a ClassLabel ``label`` (neg/pos) and an optional ``uid``."""
    columns: dict[str, Any] = {
        "image": [PILImage.new("RGB", (4, 4), (i, 0, 0)) for i in range(4)],
        "text": ["one", "two", "three", "four"],
        "label": [0, 1, 0, 1],
    }
    columns.update(overrides)
    features = Features({
        "image": Image(), "text": Value("string"), "label": ClassLabel(names=["neg", "pos"]),
        **{k: v for k, v in {"uid": Value("string")}.items() if k in columns},
    })
    return DatasetDict(train=Dataset.from_dict(columns, features=features))


def listings(root: Path, n: int = 8) -> Path:
    """A csv of listings: photo paths, title, description, price, year, brand, category."""
    rows = []
    for i in range(n):
        png(root / "photos" / f"{i}.png", (30 * i, 100, 0))
        rows.append({"photo": f"photos/{i}.png", "title": f"item {i}",
                     "description": f"a fine thing number {i}", "price": 10 + i / 2,
                     "year": 2000 + i, "brand": ["acme", "zenith"][i % 2],
                     "category": ["tools", "toys"][i % 2]})
    return write_csv(root / "listings.csv", rows)
