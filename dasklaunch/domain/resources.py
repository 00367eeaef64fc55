"""Locate the shipped `templates/` and `configs/` (package data in a wheel, the repo otherwise)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent


@cache
def data_dir(name: str) -> Path:
    packaged = PACKAGE / name
    if packaged.is_dir():
        return packaged
    return PACKAGE.parent / name


def template(name: str) -> str:
    return (data_dir("templates") / name).read_text()
