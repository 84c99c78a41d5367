"""Where the real puzzle data lives, and how a preset's dataset is built from it (`Preset.data`, a recipe)."""

from __future__ import annotations

import os
from pathlib import Path

from . import arc, maze, sudoku
from .format import DatasetError


def shared_data_root() -> Path:
    """Where the real puzzle data lives: $TRM_DATA_ROOT, else ../shared/data beside the repo or the cwd."""
    env = os.environ.get("TRM_DATA_ROOT")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        cand = base.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return Path("../shared/data")


def pool_lists(pools, sudoku_dir=None) -> list[Path]:
    """The Sudoku puzzle lists of the named pools (`sudoku.sudoku_pools`), in the shared data by default."""
    available = sudoku.sudoku_pools(sudoku_dir if sudoku_dir is not None else shared_data_root() / "sudoku")
    lists = []
    for name in pools:
        if name not in available:
            raise DatasetError(f"unknown pool '{name}' (choose from {', '.join(available)})")
        lists += available[name]
    return lists


def build_preset_data(recipe: dict, out: Path, progress: bool = True) -> Path:
    """Build the dataset a preset's recipe describes: "task" (sudoku, maze or arc; default sudoku), "path"
    (ignored here: `out` is where it goes) and the arguments of that task's build_* function; Sudoku's
    "pools" and ARC's "version" name data in the shared folder."""
    recipe = dict(recipe)
    recipe.pop("path", None)
    task = recipe.pop("task", "sudoku")
    if task == "maze":
        return maze.build_maze(out, progress=progress, **recipe)
    if task == "arc":
        train_c, test_c = arc.COLLECTIONS[recipe.pop("version")]
        return arc.build_arc(out, root=shared_data_root() / "arc", train_collections=train_c,
                             test_collections=test_c, progress=progress, **recipe)
    lists = pool_lists(recipe.pop("pools", []))
    missing = [str(x) for x in lists if not Path(x).is_file()]
    if missing:
        raise DatasetError(f"puzzle list {missing[0]} not found (set TRM_DATA_ROOT to the folder holding sudoku/)")
    return sudoku.build_sudoku(out, lists=lists, progress=progress, **recipe)
