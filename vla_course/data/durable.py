"""Durable recordings: each finished episode is complete on disk the moment it is saved.

LeRobot's writer keeps one parquet file open for a whole recording and writes its footer (without
which no reader can open the file) only in ``finalize()``: a recording that is killed loses every
episode, finished ones included. ``lerobot-record --resume`` avoids that by finalising and
reopening the dataset, but reopening re-reads all the episode metadata, so the n-th episode costs
O(n) (1 s per episode at 100 episodes, and a growing copy in the ``datasets`` cache).

Here the writer puts each episode into files of its own (``ONE_FILE_PER_EPISODE``) and closes them as
soon as the episode is saved (about 1 ms). A journal, ``meta/recording.json``, then records the
episode as saved, with a copy of ``info.json``, ``stats.json`` and the task list as they are at that
moment. If the process dies mid-save, :func:`roll_back` deletes whatever came after the last saved
episode and restores those three files, so ``--resume`` continues from a valid dataset.

While a process records into a folder it holds ``meta/recording.lock`` (``flock``: the lock
goes away with the process, even after SIGKILL). ``--overwrite`` records into ``<root>.partial`` beside
the old dataset and swaps it in only when the recording is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ONE_FILE_PER_EPISODE = 1e-6  # MB: LeRobot starts a new data/meta file when the last one is bigger than this
JOURNAL, LOCK = "meta/recording.json", "meta/recording.lock"
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class RecordingBusy(FileExistsError):
    """Another process is recording into this folder right now."""


class IncompleteRecording(FileNotFoundError):
    """The folder holds a recording that was cut off mid-episode; ``--resume`` repairs and finishes it."""


# --- small files -------------------------------------------------------------------------------------
def write_json(path: Path, obj) -> None:
    """Write JSON atomically: a reader (or a crash) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def read_journal(root: Path) -> dict | None:
    path = Path(root) / JOURNAL
    return json.loads(path.read_text()) if path.exists() else None


def is_dataset(root: Path) -> bool:
    return (Path(root) / "meta" / "info.json").is_file()


def partial_dir(target: Path) -> Path:
    """Where ``--overwrite`` records before it replaces ``target``."""
    return target.with_name(target.name + ".partial")


def short(text, limit: int = 60) -> str:
    """``repr(text)``, cut to ``limit`` characters for error messages."""
    text = str(text)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


# --- the lock ----------------------------------------------------------------------------------------
def acquire(root: Path):
    """Hold ``meta/recording.lock`` for this process, or raise ``RecordingBusy``."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one recording per folder is then up to the user
        return None
    handle = open(Path(root) / LOCK, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RecordingBusy(f"another process is recording into {root} right now; wait for it to finish "
                            "(or stop it), or record into another --root") from None
    return handle


def release(handle, root: Path) -> None:
    if handle is not None:
        handle.close()
    (Path(root) / LOCK).unlink(missing_ok=True)


def is_busy(root: Path) -> bool:
    """Whether a live process holds ``root``'s lock (probing only: the lock file stays)."""
    path = Path(root) / LOCK
    try:
        import fcntl

        with open(path) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # closing the file lets go again
    except BlockingIOError:
        return True
    except (ImportError, OSError):  # no lock file (or no flock): nobody is recording
        return False
    return False


# --- where a recording goes --------------------------------------------------------------------------
@dataclass
class Plan:
    target: Path  # where the dataset ends up
    workdir: Path  # where this run writes: target itself, or target.partial for an --overwrite
    journal: dict | None = None  # the journal to resume, or None for a new recording
    made: Path | None = None  # the outermost folder a new recording creates (removed again if it saves nothing)

    @property
    def fresh(self) -> bool:
        return self.journal is None


def resolve_root(root) -> Path:
    if not str(root).strip():
        raise ValueError(f"the dataset root is empty ({short(root)}); name a new folder, e.g. --root data/my_dataset")
    return Path(root).expanduser().resolve()


def plan_new(root, overwrite: bool) -> Plan:
    """Check ``root`` for a new recording (nothing is touched yet)."""
    target = resolve_root(root)
    workdir = target
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise FileExistsError(f"{target} is a file, not a dataset folder; choose another --root")
        if not overwrite:
            raise FileExistsError(f"dataset root {target} already exists; choose a new --root, add --overwrite to "
                                  "replace it, or --resume to continue its recording")
        if any(target.iterdir()) and not is_dataset(target):
            raise FileExistsError(f"{target} is not a LeRobot dataset (no meta/info.json) and not empty; --overwrite "
                                  "only replaces a dataset: choose a new --root")
        if is_busy(target):
            raise RecordingBusy(f"another process is recording into {target} right now; wait for it, or record "
                                "into another --root")
        workdir = partial_dir(target)  # the old dataset stays until the new one is complete
        if workdir.exists():
            if not (workdir.is_dir() and (is_dataset(workdir) or read_journal(workdir))):
                raise FileExistsError(f"{workdir} is in the way of --overwrite (it is not an unfinished recording); "
                                      "move it away or choose another --root")
            if is_busy(workdir):
                raise RecordingBusy(f"another process is recording into {workdir} right now; wait for it to finish")
    check_writable(target.parent)
    made = workdir
    while not made.parent.exists():
        made = made.parent
    return Plan(target, workdir, made=made)


def plan_resume(root) -> Plan:
    """Find the unfinished recording for ``root``: ``root.partial`` (an --overwrite) first, else ``root``."""
    target = resolve_root(root)
    for workdir in (partial_dir(target), target):
        journal = read_journal(workdir) if workdir.is_dir() else None
        if journal:
            if is_busy(workdir):
                raise RecordingBusy(f"another process is recording into {workdir} right now; wait for it to finish")
            return Plan(target, workdir, journal)
    if is_dataset(target):
        raise ValueError(f"{target} has no meta/recording.json (it was not recorded by this version of "
                         "`vla-course record`), so it cannot be resumed; record into a new --root or --overwrite it")
    raise FileNotFoundError(f"nothing to resume at {target}; start the recording with "
                            f"`vla-course record --root {target} --episodes N`")


def check_writable(folder: Path) -> None:
    """Can we make files in ``folder`` (or, if it does not exist yet, in the first ancestor that does)?"""
    while not folder.exists():  # creating it now would leave folders behind if the recording fails to start
        folder = folder.parent
    try:  # really try: permission bits say little for root or read-only file systems
        if not folder.is_dir():
            raise NotADirectoryError(20, "not a folder")
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write to {folder} ({e.strerror}); choose a --root in a writable folder") from e


# --- opening, saving, finishing ----------------------------------------------------------------------
def create(plan: Plan, repo_id: str, fps: int, features: dict):
    """A new dataset in ``plan.workdir`` whose episodes each go into their own files."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    if plan.workdir != plan.target and plan.workdir.exists():
        shutil.rmtree(plan.workdir)  # a stale unfinished --overwrite (plan_new checked it is one, and idle)
    return LeRobotDataset.create(repo_id, fps=fps, features=features, root=plan.workdir, robot_type="so100_follower",
                                 use_videos=False, data_files_size_in_mb=ONE_FILE_PER_EPISODE, metadata_buffer_size=1)


def reopen(plan: Plan):
    """Reopen an unfinished recording for appending, after undoing whatever a killed run left behind."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    roll_back(plan.workdir, plan.journal)
    dataset = LeRobotDataset.resume(plan.journal["settings"]["repo_id"], root=plan.workdir)
    dataset.meta.update_chunk_settings(data_files_size_in_mb=ONE_FILE_PER_EPISODE)
    return dataset


def commit(root: Path, journal: dict, **changes) -> None:
    """Record ``changes`` and the dataset's current metadata as the last durable state."""
    meta = Path(root) / "meta"
    stats, tasks = meta / "stats.json", meta / "tasks.parquet"
    journal.update(changes)
    journal["committed"] = {
        "info": json.loads((meta / "info.json").read_text()),
        "stats": json.loads(stats.read_text()) if stats.exists() else None,
        "tasks": _read_tasks(tasks) if tasks.exists() else [],
    }
    write_json(Path(root) / JOURNAL, journal)


def save_episode(dataset, root: Path, journal: dict, **changes) -> None:
    """LeRobot's ``save_episode``, then close the episode's files so they are complete on disk, then commit."""
    dataset.save_episode()
    dataset.writer.close_writer()  # writes the data file's parquet footer
    dataset.meta._close_writer()  # and that of its row in meta/episodes (LeRobot has no public call for it)
    saved = journal["saved"] + 1
    for folder in ("data", "meta/episodes"):
        found = len(list((Path(root) / folder).glob("*/*.parquet")))
        if found != saved:  # LeRobot reused a file: its rotation rule changed, and episodes could be lost
            raise RuntimeError(f"{root}/{folder} holds {found} files for {saved} episodes; this recorder needs "
                               "LeRobot 0.6's one-file-per-episode rotation (lerobot>=0.6.1,<0.7)")
    commit(root, journal, saved=saved, **changes)


def finish(dataset, plan: Plan, journal: dict, lock, complete: bool) -> Path:
    """Close the dataset, mark the journal, and (if complete) swap an --overwrite into place."""
    from lerobot.datasets.io_utils import write_info
    from lerobot.datasets.utils import DEFAULT_DATA_FILE_SIZE_IN_MB

    dataset.finalize()
    images = plan.workdir / "images"  # LeRobot's staging folders for frames, empty once they are embedded
    if images.is_dir() and not any(p.is_file() for p in images.rglob("*")):
        shutil.rmtree(images)
    if complete:  # later appenders (lerobot-record --resume) get LeRobot's usual file size back
        dataset.meta.update_chunk_settings(data_files_size_in_mb=DEFAULT_DATA_FILE_SIZE_IN_MB)
        write_info(dataset.meta.info, plan.workdir)
    commit(plan.workdir, journal, state="complete" if complete else "interrupted")
    release(lock, plan.workdir)
    if complete and plan.workdir != plan.target:
        swap(plan.workdir, plan.target)
        return plan.target
    return plan.workdir


def roll_back(root: Path, journal: dict) -> None:
    """Undo everything after the journal's last saved episode (what a kill mid-save leaves behind)."""
    import pandas as pd

    root, saved, committed = Path(root), journal["saved"], journal["committed"]
    for folder in ("data", "meta/episodes"):
        for extra in sorted((root / folder).glob("*/*.parquet"))[saved:]:  # one file per episode, in order
            extra.unlink()
    shutil.rmtree(root / "images", ignore_errors=True)  # the frames of an episode that was cut off
    write_json(root / "meta" / "info.json", committed["info"])
    stats, tasks = root / "meta" / "stats.json", root / "meta" / "tasks.parquet"
    if committed["stats"] is None:
        stats.unlink(missing_ok=True)
    else:
        write_json(stats, committed["stats"])
    if committed["tasks"]:
        index = pd.Index(committed["tasks"], name="task")
        pd.DataFrame({"task_index": range(len(index))}, index=index).to_parquet(tasks)
    else:
        tasks.unlink(missing_ok=True)


def remove(plan: Plan, lock) -> None:
    """Delete a new recording that saved no episode, and the folders made for it: a failed start leaves nothing."""
    release(lock, plan.workdir)
    shutil.rmtree(plan.made or plan.workdir, ignore_errors=True)


def swap(staging: Path, target: Path) -> None:
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _read_tasks(path: Path) -> list[str]:
    import pandas as pd

    return [str(t) for t in pd.read_parquet(path).sort_values("task_index").index]


# --- reading ----------------------------------------------------------------------------------------
def check_readable(root: Path) -> str | None:
    """Raise ``IncompleteRecording`` if ``root`` was cut off mid-save; return a warning if it is unfinished."""
    journal = read_journal(root)
    if not journal:
        _check_footers(Path(root))
        return None
    if journal.get("state") == "complete":
        return None
    settings, saved = journal["settings"], journal["saved"]
    planned, attempted = settings["episodes"], journal["attempted"]
    fix = f"`vla-course record --resume --root {root}`"
    if is_busy(root):
        how = f"is being recorded right now ({saved} episodes so far of {planned})"
        if not _consistent(Path(root), saved):
            raise IncompleteRecording(f"{root} {how}; load it when the recording has finished")
        return f"{root} {how}; loading the {saved} saved"
    if not _consistent(Path(root), saved):
        raise IncompleteRecording(f"{root} is an interrupted recording ({saved} of {planned} episodes saved, the next "
                                  f"one was cut off mid-save); {fix} repairs it and records the rest")
    if attempted < planned:
        return f"{root} is an unfinished recording ({attempted} of {planned} episodes); {fix} records the rest"
    return None


def _check_footers(root: Path) -> None:
    """A dataset without a journal (another tool, or an older version): is its last file complete?"""
    import pyarrow.parquet as pq

    for folder in ("data", "meta/episodes"):
        files = sorted((root / folder).glob("*/*.parquet"))
        try:
            if files:
                pq.read_metadata(files[-1])
            elif json.loads((root / "meta" / "info.json").read_text()).get("total_episodes", 0) > 0:
                raise OSError("missing")
        except (OSError, ValueError):  # pyarrow: "Parquet magic bytes not found in footer"
            raise IncompleteRecording(f"{root} is cut off: {files[-1] if files else root / folder} is incomplete (its "
                                      "recording was killed before LeRobot finalised it) and cannot be repaired; "
                                      f"record it again: `vla-course record --root {root} --overwrite ...`") from None


def _consistent(root: Path, saved: int) -> bool:
    """Whether the files on disk are exactly the journal's ``saved`` episodes."""
    try:
        info = json.loads((root / "meta" / "info.json").read_text())
    except (OSError, ValueError):  # info.json cut off mid-write
        return False
    files = [len(list((root / f).glob("*/*.parquet"))) for f in ("data", "meta/episodes")]
    return info.get("total_episodes") == saved and files == [saved, saved]


# --- signals ----------------------------------------------------------------------------------------
class Stopped(KeyboardInterrupt):
    """SIGINT (Ctrl-C), SIGTERM or SIGHUP: stop, keeping what is finished (exit code 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class StopSignals:
    """Turn SIGINT, SIGTERM and SIGHUP into ``Stopped`` (a KeyboardInterrupt) while active.

    Inside ``with stop.deferred():`` a signal waits until the block ends, so an episode is never
    half-saved. Only the main thread can handle signals; elsewhere this does nothing.
    """

    def __init__(self):
        self.old, self.depth, self.pending = {}, 0, None

    def _handle(self, signum, frame):
        if self.depth:
            self.pending = signum
        else:
            raise Stopped(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self.old.items():
            signal.signal(s, handler)
        self.old = {}

    @contextmanager
    def deferred(self, drop: bool = False):
        """Hold signals during the block; then raise ``Stopped`` (or, with ``drop``, forget them)."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if drop:
                self.pending = None
        if not self.depth and self.pending is not None:
            signum, self.pending = self.pending, None
            raise Stopped(signum)
