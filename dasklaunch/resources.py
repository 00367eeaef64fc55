"""Locate the shipped `templates/` and `configs/` (package data in a wheel, the repo otherwise)."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def data_dir(name: str) -> Path:
    packaged = Path(__file__).parent / name
    if packaged.is_dir():
        return packaged
    return Path(__file__).parent.parent / name


def template(name: str) -> str:
    return (data_dir("templates") / name).read_text()
