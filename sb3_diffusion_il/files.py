"""Writing files so that a user's data is never lost: checked before any work, written atomically."""

import os
import pathlib
import tempfile


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    """Writes ``data`` so that ``path`` is either the old file or the whole new one.

    :raises OSError: naming ``path``, what is wrong with it and what to do, when it cannot be written
    """
    path = pathlib.Path(path)
    check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise OSError(e.errno, f"Cannot write {path} ({e.strerror}): choose a path you can write to.") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: pathlib.Path) -> None:
    """Makes ``path``'s folder if needed; raises an ``OSError`` that names ``path``, the
    problem and the fix if a file cannot be written there (before any work is done)."""
    if path.is_dir():
        raise IsADirectoryError(f"Cannot write {path}: it is a directory. Name a file, e.g. {path / 'file'}.")
    existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise NotADirectoryError(f"Cannot write {path}: {existing} is a file, not a folder. Choose another path.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"Cannot create the folder of {path} ({e.strerror}): choose a path you can write to.")
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"Cannot write {path}: its folder is not writable. Choose a path you can write to.")
