"""Atomic output writes that leave no lasting debris: every file and directory the library
writes (`.lnx` files, exports, the CLI's decompressed models) goes through `write_file`,
`save_file` or `new_directory`.

A target is built in a temporary sibling (same directory, hence same file system: a file
inside a temporary directory, a directory as the temporary itself), synced to disk, and
renamed over the target, so a reader sees the old or the new target, never a part.
Temporaries are named

    .<target name>.<host>.<pid>.<random>.tmp

A writer killed before its rename leaves one behind; the next write of the same target removes
every such temporary whose writer (this host, that pid) is no longer running, so kills leave
no lasting debris while concurrent writers keep theirs. (A temporary whose pid has meanwhile
been reused by a live process is left for a later write.)

A symlink is written through, as `open(path, "wb")` would: the target is the path it resolves
to, the link stays a link and points at the new file. A directory is replaced by exchanging it
with the finished temporary in one `renameat2(RENAME_EXCHANGE)` call (Linux 3.15+); where that
is unavailable, by two renames, between which the target is briefly missing.
"""

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import sys
from typing import Callable, Iterator

from lilnetx_tf import errors

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMPORARY = re.compile(r"([0-9a-f]{8})\.([0-9]+)\.[0-9a-z]+\.tmp")
_MAX_STEM = 100          # keeps temporary names under the usual 255-byte limit
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _error(target: str, cause: OSError) -> errors.OutputPathError:
  return errors.os_error(errors.OutputPathError,
                         f"Cannot write {target}: {cause.strerror or cause}.", cause)


def resolve(path) -> str:
  """The absolute path a write to `path` lands on: symlinks (also dangling ones) followed."""
  if not isinstance(path, (str, os.PathLike)):
    raise errors.InvalidArgumentError(f"Expected a file path, got {path!r}.")
  target = os.path.realpath(os.fspath(path))
  if os.path.islink(target):
    raise errors.OutputPathError(f"Cannot write {path}: a loop of symbolic links.")
  return target


def _prefix(target: str) -> str:
  name = os.path.basename(target)
  if len(name) > _MAX_STEM:
    name = name[:_MAX_STEM // 2] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
  return f".{name}."


def _temporary(target: str) -> str:
  return os.path.join(os.path.dirname(target), f"{_prefix(target)}{_HOST}.{os.getpid()}."
                      f"{secrets.token_hex(4)}.tmp")


def _running(pid: int) -> bool:
  if os.name == "nt":          # os.kill would terminate it: never clean on Windows
    return True
  if not 0 < pid < 1 << 31:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:      # another user's process
    return True
  return True


def stale_temporaries(target: str) -> list:
  """Paths of the temporaries of `target` whose writer on this host is no longer running."""
  directory, prefix = os.path.dirname(target), _prefix(target)
  stale = []
  with os.scandir(directory) as entries:
    for entry in entries:
      match = entry.name.startswith(prefix) and _TEMPORARY.fullmatch(entry.name[len(prefix):])
      if match and match.group(1) == _HOST and not _running(int(match.group(2))):
        stale.append(entry.path)
  return stale


def _remove(path: str) -> None:
  """Removes a file or directory tree, as far as it can: gone already (another writer
  cleaning) or not removable (another user's) must not fail the write."""
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  else:
    with contextlib.suppress(OSError):
      os.unlink(path)


def _clean(target: str) -> None:
  for path in stale_temporaries(target):
    _remove(path)


def _sync_directory(directory: str) -> None:
  """Makes a rename in `directory` durable (where the file system can sync a directory)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _write_chunks(handle, blob: bytes) -> None:
  """Writes `blob` in chunks (a seam for tests that interrupt a write)."""
  chunk = 1 << 22
  for start in range(0, len(blob), chunk):
    handle.write(blob[start:start + chunk])


def save_file(path, save: Callable[[str], None]) -> str:
  """Runs `save(temp)`, which writes a file at `temp`: a path with the target's name inside a
  fresh temporary directory next to `path`; then moves that file over `path` (through a
  symlink) atomically. Returns the path written. (Keras's `model.save` takes such a `save`:
  it picks its format by the name's suffix.)

  `path` keeps its permissions if it exists. If anything fails or interrupts the write, `path`
  is left as it was and the temporary is removed.
  """
  target = resolve(path)
  if os.path.isdir(target):
    raise errors.OutputPathError(f"Cannot write {path}: it is a directory.")
  scratch = _temporary(target)
  try:
    _clean(target)
    os.mkdir(scratch)
  except OSError as e:
    raise _error(target, e) from e
  try:
    temp = os.path.join(scratch, os.path.basename(target))
    save(temp)
    if os.path.exists(target):
      os.chmod(temp, os.stat(target).st_mode & 0o777)
    fd = os.open(temp, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    os.replace(temp, target)
  except OSError as e:
    if isinstance(e, errors.LilNetXError):
      raise
    raise _error(target, e) from e
  finally:
    _remove(scratch)
  _sync_directory(os.path.dirname(target))
  return target


def write_file(path, blob: bytes) -> str:
  """Writes `blob` to `path` atomically (`save_file`); returns the path written."""
  def save(temp: str) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                 0o666)
    with os.fdopen(fd, "wb") as handle:
      _write_chunks(handle, blob)
  return save_file(path, save)


def _sync_tree(root: str) -> None:
  for directory, _, files in os.walk(root):
    for name in files:
      fd = os.open(os.path.join(directory, name), os.O_RDONLY)
      try:
        os.fsync(fd)
      finally:
        os.close(fd)
    _sync_directory(directory)


def _exchange(a: str, b: str) -> bool:
  """Swaps two existing paths atomically; False where the system cannot."""
  if not sys.platform.startswith("linux"):
    return False
  libc = ctypes.CDLL(None, use_errno=True)
  if not hasattr(libc, "renameat2"):
    return False
  if libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE):
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
      return False
    raise OSError(code, os.strerror(code), b)
  return True


def _swap_in(temp: str, target: str) -> None:
  """Puts the directory `temp` at `target`, removing what was there (an existing directory)."""
  if not os.path.lexists(target):
    os.rename(temp, target)
  elif _exchange(temp, target):
    _remove(temp)                  # now the old directory
  else:
    old = _temporary(target)
    os.rename(target, old)
    try:
      os.rename(temp, target)
    except BaseException:
      os.rename(old, target)
      raise
    _remove(old)
  _sync_directory(os.path.dirname(target))


@contextlib.contextmanager
def new_directory(path, check: Callable[[str], None]) -> Iterator[str]:
  """Yields an empty temporary directory to fill; on a clean exit it replaces `path`.

  `check(target)` raises unless the existing `target` (the resolved `path`) may be replaced;
  it runs before the temporary is made and again just before the swap. On any error or
  interrupt the temporary is removed and `path` is left as it was.
  """
  target = resolve(path)
  check(target)
  temp = _temporary(target)
  try:
    try:
      os.makedirs(os.path.dirname(target), exist_ok=True)
    except (FileExistsError, NotADirectoryError):
      raise OSError(errno.ENOTDIR, "a part of the path is a file, not a directory") from None
    _clean(target)
    os.mkdir(temp)
  except OSError as e:
    raise _error(target, e) from e
  try:
    yield temp
    _sync_tree(temp)
    check(target)
    _swap_in(temp, target)
  except BaseException as e:
    _remove(temp)
    if isinstance(e, OSError) and not isinstance(e, errors.LilNetXError):
      raise _error(target, e) from e
    raise


__all__ = ["new_directory", "resolve", "save_file", "stale_temporaries", "write_file"]
