"""Reading and writing table folders (``DIR/<table>/part-NNNNN.parquet``).

The one place that knows the on-disk layout of raw, clean and quarantine tables.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def table_dir(root: str | Path, name: str) -> Path:
    """Return the folder that holds table ``name`` under ``root``.

    Parameters
    ----------
    root : str or Path
        A raw, clean or quarantine directory.
    name : str
        Table name.

    Returns
    -------
    Path
        ``root / name``.
    """
    return Path(root) / name


def part_files(root: str | Path, name: str) -> list[Path]:
    """List a table's part files in order.

    Parameters
    ----------
    root : str or Path
        Directory holding table folders.
    name : str
        Table name.

    Returns
    -------
    list of Path
        Sorted ``part-*.parquet`` files; empty when the table is absent.
    """
    return sorted(table_dir(root, name).glob("part-*.parquet"))


def write_table(df: pd.DataFrame, root: str | Path, name: str, part: int = 0) -> Path:
    """Write one part of a table.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows to write.
    root : str or Path
        Directory holding table folders (created if needed).
    name : str
        Table name.
    part : int, default 0
        Part number; parts are read back in number order.

    Returns
    -------
    Path
        The file written.
    """
    folder = table_dir(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{part:05d}.parquet"
    df.to_parquet(path, index=False)
    return path


def read_table(root: str | Path, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read every part of a table into one frame.

    Parameters
    ----------
    root : str or Path
        Directory holding table folders.
    name : str
        Table name.
    columns : list of str, optional
        Subset of columns to read.

    Returns
    -------
    pandas.DataFrame
        The concatenated parts.

    Raises
    ------
    FileNotFoundError
        If the table has no part files.
    """
    files = part_files(root, name)
    if not files:
        raise FileNotFoundError(
            f"{table_dir(root, name)}: no part-*.parquet files for table {name!r}"
        )
    frames = [pd.read_parquet(f, columns=columns) for f in files]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
