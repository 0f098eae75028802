"""Clean-up between jobs: nothing a program leaves may reach the next one.

Runs in the job's supervisor S after every process of the job is dead. IPC objects and
keyrings are removed first (they do not depend on the files), then /tmp is emptied by an
iterative walk that holds one directory descriptor at a time, so no depth of tree (nor a
path longer than PATH_MAX) can stop it. Each pass runs as the uid that owns what it removes
(root in the sandbox has no CAP_DAC_OVERRIDE). Afterwards /tmp and the System V tables are
checked: if anything is left, the caller retires the whole worker (fail closed).
"""

import ctypes
import os
import time

from sandbox.inside.candidate import WORK_DIR
from sandbox.inside.common import LIBC

KEYCTL_SYSCALL = {"x86_64": 250, "aarch64": 219}
CLEANUP_BUDGET_S = 3.0  # a tree that takes longer to remove retires the worker instead
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def key_usage(uid):
    """This uid's line of /proc/key-users (key and byte counts), or None."""
    try:
        with open("/proc/key-users") as fh:
            for line in fh:
                head, _, rest = line.partition(":")
                if head.strip() == str(uid):
                    return rest.split(None, 1)[1].strip()
    except (OSError, IndexError):
        pass
    return None


def sysv_rows(table):
    try:
        with open(f"/proc/sysvipc/{table}") as fh:
            return fh.read().splitlines()[1:]
    except OSError:
        return []


def leftovers():
    """What is left of the last job: /tmp entries and System V IPC objects (empty when clean)."""
    try:
        names = os.listdir(WORK_DIR)
    except OSError as exc:
        names = [f"<cannot list {WORK_DIR}: {exc}>"]
    return names + [f"sysv {t}" for t in ("shm", "sem", "msg") if sysv_rows(t)]


def cleanup(cfg, max_fd, keys_baseline):
    """Remove every trace of the last job. True when /tmp and the IPC tables are empty."""
    uid = cfg["candidate_uid"] if cfg["candidate_uid"] is not None else os.getuid()
    keys_dirty = key_usage(uid) != keys_baseline
    if not keys_dirty and not leftovers():
        return True
    owners = [cfg["candidate_uid"], cfg["judge_uid"]] if cfg["candidate_uid"] is not None else [None]
    deadline = time.monotonic() + CLEANUP_BUDGET_S
    for owner in owners:
        _as_uid(owner, max_fd, lambda: _remove_all(keys_dirty, deadline))
        if not leftovers():
            break
    return not leftovers()


def _as_uid(uid, max_fd, work):
    """Run ``work`` in a child process switched to ``uid`` (None: our own)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.closerange(0, max_fd)  # the host's channel stays with the supervisor
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            work()
        except BaseException:  # noqa: BLE001 - what is left is found by leftovers()
            pass
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _remove_all(keys_dirty, deadline):
    for step in (remove_sysv_ipc, clear_keyrings if keys_dirty else None):
        if step is not None:
            try:
                step()
            except (OSError, AttributeError, ValueError):
                pass
    remove_tree_contents(WORK_DIR, deadline)


def remove_tree_contents(top, deadline=None):
    """Delete everything below ``top`` without recursion and with one open directory at a time:
    descend with openat, climb back through "..". False if something could not be removed."""
    fd = os.open(top, _DIR_FLAGS)
    names = []  # the path from top to the current directory, one name per level
    try:
        while True:
            if deadline is not None and time.monotonic() > deadline:
                return False
            sub, removed = None, False
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    try:
                        os.unlink(entry.name, dir_fd=fd)
                        removed = True
                    except FileNotFoundError:
                        pass
            if sub is not None:
                try:
                    os.chmod(sub, 0o700, dir_fd=fd)  # every process of the job is dead: no race
                    child = os.open(sub, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    return False
                os.close(fd)
                fd = child
                names.append(sub)
                continue
            if removed:
                continue  # entries may have been skipped while the directory changed: look again
            if not names:
                return True
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            try:
                os.rmdir(names.pop(), dir_fd=fd)
            except OSError:
                return False
    except OSError:
        return False
    finally:
        os.close(fd)


def clear_keyrings():
    """Unlink every key from the user, user-session and persistent keyrings of our uid."""
    sys_keyctl = KEYCTL_SYSCALL.get(os.uname().machine)
    if sys_keyctl is None:
        return
    keyctl = LIBC.syscall
    keyctl.restype = ctypes.c_long
    clear, get_persistent = 7, 22  # KEYCTL_CLEAR, KEYCTL_GET_PERSISTENT
    for ring in (-4, -5):  # KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING
        keyctl(sys_keyctl, clear, ctypes.c_long(ring))
    persistent = keyctl(sys_keyctl, get_persistent, ctypes.c_long(-1), ctypes.c_long(-1))
    if persistent > 0:
        keyctl(sys_keyctl, clear, ctypes.c_long(persistent))


def remove_sysv_ipc():
    """IPC_RMID every System V segment, semaphore set and queue that this uid may remove."""
    ipc_rmid = 0
    for table, fn in (("shm", LIBC.shmctl), ("sem", LIBC.semctl), ("msg", LIBC.msgctl)):
        for row in sysv_rows(table):
            parts = row.split()
            if len(parts) > 1:
                if table == "sem":
                    fn(int(parts[1]), 0, ipc_rmid)
                else:
                    fn(int(parts[1]), ipc_rmid, None)
