#!/usr/bin/python3
"""A FUSE file system whose unsynced writes are lost when the power is cut.

    powercut_fs.py BACKING MOUNTPOINT

MOUNTPOINT shows the files of the directory BACKING. Everything written through
the mount is kept in this process's memory (the "page cache") and reaches
BACKING (the "disk") only when it is synced:

* fsync or fdatasync of a file writes that file's contents and length to every
  name that durably refers to it in BACKING;
* fsync of a directory makes its entries durable: names created, renamed or
  removed since the last sync appear in (or leave) BACKING, a file created
  since then with the contents of its last sync (empty if it never was).

So BACKING always holds exactly what a disk that honours fsync would hold, and
nothing more. Commands, one per line on standard input:

    cut [SEED]
        power cut: every later operation fails with EIO, nothing more reaches
        BACKING, and what was not synced is gone; answers "cut KEPT LOST".
        With SEED (an integer), a part of what was not synced reaches BACKING
        first, as if the kernel had written it back before the power failed:
        about half of the unsynced pages of the files with a durable name,
        each page torn after a random number of its 512-byte sectors, chosen
        by SEED; KEPT and LOST count those pages written back and not.
    cut-on-fsync NAME OFFSET [SEED]
        the same cut, at the next fsync or fdatasync of NAME whose lowest
        byte written since the last sync is OFFSET; that sync fails.
    unmount
        unmounts and exits (end of input does the same)

Standard output: "ready" once the file system is mounted, then one line per
sync ("fsync NAME OFFSET", OFFSET the lowest byte written since the file's
last sync, or its length if none was; or "fsyncdir NAME"; NAME from the root
of the mount, "/"), and "cut KEPT LOST" when a cut is done.

Limitations: one thread; no hard or symbolic links; a directory cannot be
renamed; a directory whose own entry was never synced is made durable by an
fsync of the directory itself (a real disk would need its parent synced too).
"""

import errno
import os
import random
import stat
import subprocess
import sys
import threading
import time

try:  # Debian's python3-fusepy names the module fusepy, PyPI's fusepy fuse.
    import fusepy as fuse
except ImportError:
    import fuse

PAGE = 4096


class File:
    def __init__(self, data=b""):
        self.data = bytearray(data)  # what readers see
        self.synced = bytearray(data)  # contents as of the last sync
        self.dirty = set()  # pages written since the last sync
        self.first = None  # lowest offset written since the last sync
        self.mode = stat.S_IFREG | 0o644
        self.mtime = time.time()


class Dir:
    def __init__(self):
        self.children = {}
        self.mode = stat.S_IFDIR | 0o755
        self.mtime = time.time()


def split(path):
    return [p for p in path.split("/") if p]


class PowerCutFs(fuse.Operations):
    use_ns = False

    def __init__(self, backing, out):
        self.backing = backing
        self.out = out
        self.mutex = threading.Lock()
        self.dead = False
        self.handles = {}
        self.next_fh = 1
        # Relative path in BACKING -> the node whose synced state is there.
        self.durable = {}
        # (NAME, OFFSET, SEED) of an armed cut-on-fsync.
        self.armed = None
        self.root = self.load("")

    # -- loading what is on the disk ---------------------------------------

    def load(self, rel):
        full = os.path.join(self.backing, rel)
        if os.path.isdir(full):
            node = Dir()
            for name in sorted(os.listdir(full)):
                node.children[name] = self.load(os.path.join(rel, name))
        else:
            with open(full, "rb") as f:
                node = File(f.read())
        self.durable[rel] = node
        return node

    # -- plumbing -----------------------------------------------------------

    def __call__(self, op, path, *args):
        with self.mutex:
            if self.dead and op not in ("destroy", "release", "releasedir"):
                raise fuse.FuseOSError(errno.EIO)
            return super().__call__(op, path, *args)

    def say(self, line):
        self.out.write(line + "\n")
        self.out.flush()

    def lookup(self, path):
        node = self.root
        for part in split(path):
            if not isinstance(node, Dir) or part not in node.children:
                raise fuse.FuseOSError(errno.ENOENT)
            node = node.children[part]
        return node

    def parent(self, path):
        parts = split(path)
        if not parts:
            raise fuse.FuseOSError(errno.EINVAL)
        d = self.lookup("/" + "/".join(parts[:-1]))
        if not isinstance(d, Dir):
            raise fuse.FuseOSError(errno.ENOTDIR)
        return d, parts[-1]

    def node_of(self, path, fh):
        if fh is not None and fh in self.handles:
            return self.handles[fh]
        return self.lookup(path)

    def handle(self, node):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node
        return fh

    def file(self, path, fh):
        node = self.node_of(path, fh)
        if isinstance(node, Dir):
            raise fuse.FuseOSError(errno.EISDIR)
        return node

    # -- the power cut ------------------------------------------------------

    def cut(self, seed=None):
        with self.mutex:
            self.cut_locked(seed)

    def arm(self, name, offset, seed):
        with self.mutex:
            self.armed = (name, offset, seed)

    def cut_locked(self, seed):
        kept, lost = self.write_back_some(random.Random(seed)) if seed is not None else (0, 0)
        self.dead = True
        self.root = Dir()
        self.handles.clear()
        self.durable.clear()
        self.say(f"cut {kept} {lost}")

    def write_back_some(self, rng):
        """Writes about half of the unsynced pages back, each torn; returns
        how many pages were written and how many were not."""
        kept = lost = 0
        for rel, node in sorted(self.durable.items(), key=lambda kv: kv[0]):
            if not isinstance(node, File) or not node.dirty:
                continue
            fd = os.open(os.path.join(self.backing, rel), os.O_WRONLY)
            try:
                for page in sorted(node.dirty):
                    chunk = node.data[page * PAGE:page * PAGE + rng.randint(1, PAGE // 512) * 512]
                    if chunk and rng.random() < 0.5:
                        os.pwrite(fd, chunk, page * PAGE)
                        kept += 1
                    else:
                        lost += 1
                os.fsync(fd)
            finally:
                os.close(fd)
        return kept, lost

    # -- operations ---------------------------------------------------------

    def init(self, path):
        self.say("ready")

    def getattr(self, path, fh=None):
        node = self.node_of(path, fh)
        now = node.mtime
        attrs = dict(st_mode=node.mode, st_atime=now, st_mtime=now, st_ctime=now, st_uid=0, st_gid=0)
        if isinstance(node, Dir):
            attrs.update(st_nlink=2, st_size=4096)
        else:
            attrs.update(st_nlink=1, st_size=len(node.data), st_blocks=(len(node.data) + 511) // 512)
        return attrs

    def access(self, path, amode):
        self.lookup(path)

    def statfs(self, path):
        s = os.statvfs(self.backing)
        return {k: getattr(s, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                                            "f_files", "f_ffree", "f_favail", "f_namemax")}

    def readdir(self, path, fh):
        d = self.lookup(path)
        if not isinstance(d, Dir):
            raise fuse.FuseOSError(errno.ENOTDIR)
        return [".", ".."] + list(d.children)

    def mkdir(self, path, mode):
        d, name = self.parent(path)
        if name in d.children:
            raise fuse.FuseOSError(errno.EEXIST)
        d.children[name] = Dir()

    def rmdir(self, path):
        d, name = self.parent(path)
        node = d.children.get(name)
        if not isinstance(node, Dir):
            raise fuse.FuseOSError(errno.ENOTDIR if node else errno.ENOENT)
        if node.children:
            raise fuse.FuseOSError(errno.ENOTEMPTY)
        del d.children[name]

    def create(self, path, mode, fi=None):
        d, name = self.parent(path)
        node = d.children.get(name)
        if node is None:
            node = d.children[name] = File()
            node.mode = stat.S_IFREG | (mode & 0o7777)
        return self.handle(node)

    def open(self, path, flags):
        node = self.file(path, None)
        if flags & os.O_TRUNC:
            self.truncate(path, 0, None)
        return self.handle(node)

    def release(self, path, fh):
        self.handles.pop(fh, None)

    def flush(self, path, fh):
        pass

    def read(self, path, size, offset, fh):
        return bytes(self.file(path, fh).data[offset:offset + size])

    def write(self, path, data, offset, fh):
        node = self.file(path, fh)
        end = offset + len(data)
        if end > len(node.data):
            node.data.extend(b"\0" * (end - len(node.data)))
        node.data[offset:end] = data
        node.dirty.update(range(offset // PAGE, (end + PAGE - 1) // PAGE))
        node.first = offset if node.first is None else min(node.first, offset)
        node.mtime = time.time()
        return len(data)

    def truncate(self, path, length, fh=None):
        node = self.file(path, fh)
        lo, hi = sorted((length, len(node.data)))
        node.dirty.update(range(lo // PAGE, (hi + PAGE - 1) // PAGE))
        if length < len(node.data):
            del node.data[length:]
        else:
            node.data.extend(b"\0" * (length - len(node.data)))
        node.mtime = time.time()

    def file_entry(self, path):
        """The directory that holds `path`, the name in it, and the file
        (not a directory) it names."""
        d, name = self.parent(path)
        node = d.children.get(name)
        if node is None:
            raise fuse.FuseOSError(errno.ENOENT)
        if isinstance(node, Dir):
            raise fuse.FuseOSError(errno.EISDIR)
        return d, name, node

    def unlink(self, path):
        d, name, _ = self.file_entry(path)
        del d.children[name]

    def rename(self, old, new):
        od, oname, node = self.file_entry(old)
        nd, nname = self.parent(new)
        if isinstance(nd.children.get(nname), Dir):
            raise fuse.FuseOSError(errno.EISDIR)
        del od.children[oname]
        nd.children[nname] = node

    def chmod(self, path, mode):
        node = self.lookup(path)
        node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)

    def chown(self, path, uid, gid):
        pass

    def utimens(self, path, times=None):
        self.lookup(path).mtime = times[1] if times else time.time()

    # -- syncs: the only way anything reaches BACKING -----------------------

    def fsync(self, path, datasync, fh):
        node = self.file(path, fh)
        first = len(node.data) if node.first is None else node.first
        if self.armed and self.armed[:2] == (path, first):
            self.cut_locked(self.armed[2])
            raise fuse.FuseOSError(errno.EIO)
        del node.synced[len(node.data):]
        node.synced.extend(node.data[len(node.synced):])
        for page in node.dirty:
            node.synced[page * PAGE:(page + 1) * PAGE] = node.data[page * PAGE:(page + 1) * PAGE]
        for rel, n in self.durable.items():
            if n is node:
                self.write_back(rel, node)
        node.dirty.clear()
        node.first = None
        self.say(f"fsync {path} {first}")

    def write_back(self, rel, node):
        """Writes the pages of `node` changed since its last sync to its
        durable name `rel`, which holds that sync's contents."""
        full = os.path.join(self.backing, rel)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for page in sorted(node.dirty):
                chunk = node.synced[page * PAGE:(page + 1) * PAGE]
                if chunk:
                    os.pwrite(fd, chunk, page * PAGE)
            os.ftruncate(fd, len(node.synced))
            os.fsync(fd)
        finally:
            os.close(fd)

    def fsyncdir(self, path, datasync, fh):
        d = self.lookup(path)
        rel = "/".join(split(path))
        full = os.path.join(self.backing, rel)
        os.makedirs(full, exist_ok=True)
        self.durable[rel] = d
        for name in os.listdir(full):
            if name not in d.children:
                self.forget(os.path.join(rel, name))
        for name, child in d.children.items():
            crel = os.path.join(rel, name)
            if self.durable.get(crel) is child:
                continue
            self.forget(crel)
            if isinstance(child, Dir):
                os.mkdir(os.path.join(self.backing, crel))
            else:
                with open(os.path.join(self.backing, crel), "wb") as f:
                    f.write(child.synced)
                    f.flush()
                    os.fsync(f.fileno())
            self.durable[crel] = child
        dfd = os.open(full, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.say(f"fsyncdir {path}")

    def forget(self, rel):
        """Removes the durable name `rel` (and what is under it) from BACKING."""
        full = os.path.join(self.backing, rel)
        for k in [k for k in self.durable if k == rel or k.startswith(rel + "/")]:
            del self.durable[k]
        if os.path.isdir(full):
            for name in os.listdir(full):
                self.forget(os.path.join(rel, name))
            os.rmdir(full)
        elif os.path.lexists(full):
            os.unlink(full)


def commands(fs, mountpoint):
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["cut"]:
            fs.cut(int(words[1]) if len(words) > 1 else None)
        elif words[:1] == ["cut-on-fsync"]:
            fs.arm(words[1], int(words[2]), int(words[3]) if len(words) > 3 else None)
        elif words == ["unmount"]:
            break
    # Lazily if still busy (a process that was not stopped holds a file open).
    if subprocess.run(["umount", mountpoint], check=False).returncode != 0:
        subprocess.run(["umount", "-l", mountpoint], check=False)


def main():
    backing, mountpoint = sys.argv[1], sys.argv[2]
    fs = PowerCutFs(os.path.abspath(backing), sys.stdout)
    threading.Thread(target=commands, args=(fs, mountpoint), daemon=True).start()
    fuse.FUSE(fs, mountpoint, foreground=True, nothreads=True, direct_io=True, hard_remove=True,
              fsname="powercut")


if __name__ == "__main__":
    main()
