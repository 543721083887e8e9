"""Starts the real cyborgfs on a temp mountpoint and drives it with real programs.

Every Mount is unmounted and its daemon stopped (by its pid) when the test ends,
whether it passed or not.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

BIN = os.environ.get("CYBORGFS_BIN", os.path.join(os.path.dirname(__file__), "../../build/cyborgfs"))
# Where the build keeps the test tools (stall_fs).
BUILD_DIR = os.environ.get("CYBORGFS_BUILD_DIR", os.path.dirname(os.path.abspath(BIN)))
HOST = "testhost"
# The files of every accelerator folder; any other name there is a scratch file.
LISTED = {"name", "spec", "attach", "status", "error", "device_type", "acc_type", "vendor_id", "product_id",
          "remotable", "driver", "attach_handle", "reported_by", "model", "numa_node", "iommu_group", "physfn",
          "mdev_types", "virtfns", "sriov_totalvfs", "sriov_numvfs", "subsystem_id", "health",
          "maintenance"}


# A watcher of a file, as the README's "Watching a file" has it: prints "ready"
# after its first poll, then "woken <value>" at each wake; ends after argv[2]
# seconds without one.
WATCHER = r"""
import select, sys
f = open(sys.argv[1])
f.read()
p = select.poll()
p.register(f, select.POLLPRI | select.POLLERR)
p.poll(0)  # the first poll: what it read is what it was told of
print("ready", flush=True)
while True:
    events = p.poll(int(float(sys.argv[2]) * 1000))
    if not events:
        break
    f.seek(0)
    print("woken " + f.read().strip(), flush=True)
"""


def parse_metrics(text):
    """The samples of a Prometheus text exposition: {(name, frozenset of (label, value)): value}."""
    import re
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def metric(samples, name, **labels):
    """The value of the one sample `name` whose labels include `labels`."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, "%d samples of %s %s" % (len(found), name, labels)
    return found[0]


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def is_mounted(path):
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == path for line in mounts)


def echo_into(path, text):
    """As the shell's `echo text > path` does it: open(O_TRUNC), one write(2), close."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def fuse_connection(path):
    """The FUSE connection number of the topmost mount on `path`, or None."""
    found = None
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if fields[4] == path and fields[fields.index("-") + 1].startswith("fuse"):
                found = fields[2].split(":")[1]
    return found


def clear_mounts(path):
    """Unmounts whatever FUSE mounts a test left on `path`, even hung ones."""
    while (connection := fuse_connection(path)) is not None:
        if not os.path.ismount("/sys/fs/fuse/connections"):
            subprocess.run(["mount", "-t", "fusectl", "none", "/sys/fs/fuse/connections"])
        with open("/sys/fs/fuse/connections/%s/abort" % connection, "w") as abort:
            abort.write("1")
        subprocess.run(["umount", "-l", path], check=True)


def is_served(path):
    """True when a live cyborgfs answers on `path` (not a dead mount, not the bare folder)."""
    return os.path.isdir(os.path.join(path, "accelerators"))


class Notifications:
    """A socket in `folder` taking sd_notify(3) messages, as systemd's $NOTIFY_SOCKET."""

    def __init__(self, folder):
        self.path = tempfile.mktemp(prefix="notify-", suffix=".sock", dir=folder)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.setblocking(False)
        self.messages = []

    def received(self):
        """Every message so far, each a list of its KEY=value lines."""
        while True:
            try:
                self.messages.append(self.socket.recv(4096).decode().splitlines())
            except BlockingIOError:
                return [line for message in self.messages for line in message]

    def close(self):
        self.socket.close()
        os.unlink(self.path)


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket (the REST API's)."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class Reply:
    """An HTTP response read whole: status, headers (lowercase names), body bytes."""

    def __init__(self, response):
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.body = response.read()

    def json(self):
        return json.loads(self.body)

    def error(self):
        """The message of an error body, checking its shape on the way."""
        assert self.headers.get("content-type") == "application/json", self.headers
        body = self.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        assert body["error"]["code"] == self.status, body
        return body["error"]["message"]

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


def http_request(conn, method, path, body=None, headers=None):
    """One request on `conn`; a dict or list body is sent as JSON. Returns a Reply."""
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=headers)
    return Reply(conn.getresponse())


class Mount:
    """One daemon in the foreground on `self.mnt`, with its database `self.db`."""

    def __init__(self, workdir, *extra_args, db=None, fake_devices=4, host=HOST, env=None):
        self.workdir = workdir
        self.mnt = os.path.join(workdir, "mnt")
        self.db = db or os.path.join(workdir, "cyborgfs.db")
        self.log_path = os.path.join(workdir, "daemon.log")
        try:
            os.mkdir(self.mnt)
        except FileExistsError:  # also a dead mount, which isdir() cannot see
            pass
        self.api_socket = os.path.join(workdir, "api.sock")
        drivers = [] if "--drivers" in extra_args else ["--drivers", "fake"]
        api = [] if "--api-socket" in extra_args else ["--api-socket", self.api_socket]
        args = [BIN, "-f", "--db", self.db, "--host", host, "--fake-devices", str(fake_devices),
                "--log-level", "debug", *drivers, *api, *extra_args, self.mnt]
        self.log = open(self.log_path, "ab")
        self.notifications = Notifications(workdir)  # the daemon says READY=1 when its mount is live
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=dict(os.environ, NOTIFY_SOCKET=self.notifications.path, **(env or {})))
        try:
            wait_for(lambda: "READY=1" in self.notifications.received() or self.proc.poll() is not None,
                     what="the mount")
            if self.proc.poll() is not None:
                raise AssertionError("cyborgfs exited with %d: %s" % (self.proc.returncode, self.log_text()))
        except BaseException:
            self.stop()
            raise

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def audit(self):
        """The audit trail's lines in the log, from "time=" on."""
        return [line.split(" audit ", 1)[1] for line in self.log_text().splitlines() if " audit " in line]

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def stop(self):
        """Unmounts and waits for the daemon; returns its exit code.

        Raises if the daemon had died on its own before (a crash).
        """
        if self.log.closed:  # crashed; if no daemon after it ended its dying, the test does
            try:
                return self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                clear_mounts(self.mnt)
                return self.proc.wait(timeout=15)
        died = self.proc.poll()
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.notifications.close()
        if died not in (None, 0):
            raise AssertionError("cyborgfs died with %d before the test ended:\n%s" % (died, self.log_text()[-3000:]))
        return self.proc.returncode

    def crash(self, clear=True):
        """kill -9 of the daemon; then clears the dead mount it leaves, unless not `clear`.

        Without `clear` the daemon may not be done dying (it can be stuck on its own
        mount): the next daemon on its database must end it."""
        self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:  # stuck dying
            pass
        if clear:
            clear_mounts(self.mnt)
            self.proc.wait()
        self.log.close()
        self.notifications.close()


class BackgroundMount:
    """One daemon started without -f, as scripts/demo.sh does it: the starting
    process took the database's lock, forked the daemon and exited."""

    def __init__(self, mnt, db, *extra_args):
        self.mnt, self.db = mnt, db
        os.makedirs(mnt, exist_ok=True)
        self.api_socket = mnt.rstrip("/") + ".api.sock"
        api = [] if "--api-socket" in extra_args else ["--api-socket", self.api_socket]
        self.args = [BIN, "--db", db, "--host", HOST, "--drivers", "fake", *api, *extra_args, mnt]
        r = subprocess.run(self.args, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.start_stderr = r.stderr
        if r.returncode != 0:
            raise AssertionError("cyborgfs exited with %d: %s" % (r.returncode, r.stderr))
        self.pid = self.daemon_pid()

    def daemon_pid(self):
        """The pid of the process whose command line is ours (the starter has exited)."""
        wanted = "\0".join(self.args).encode() + b"\0"
        for entry in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    if entry.isdigit() and f.read() == wanted:
                        return int(entry)
            except OSError:
                pass
        raise AssertionError("no daemon for " + self.mnt)

    def alive(self):
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    def stop(self):
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], stderr=subprocess.DEVNULL)
        wait_for(lambda: not self.alive(), timeout=15, what="the daemon to exit")


class MountTest(unittest.TestCase):
    """A test with a fresh work folder and one mounted daemon in self.fs."""

    fake_devices = 4

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="cyborgfs-test-")
        self.addCleanup(shutil.rmtree, self.workdir, ignore_errors=True)
        self.addCleanup(clear_mounts, os.path.join(self.workdir, "mnt"))
        self.fs = self.start()

    def start(self, *args, **kwargs):
        kwargs.setdefault("fake_devices", self.fake_devices)
        m = Mount(self.workdir, *args, **kwargs)
        self.addCleanup(m.stop)
        return m

    def restart(self, *args, crash=False, clear=True, **kwargs):
        """A new daemon on the same database, after a clean stop or a kill -9 (`crash`),
        whose dead mount is left for the new daemon to replace unless `clear`."""
        if crash:
            self.fs.crash(clear)
        else:
            self.assertEqual(self.fs.stop(), 0, self.fs.log_text())
        self.fs = self.start(*args, db=self.fs.db, **kwargs)
        return self.fs

    def watcher(self, path, idle=3):
        """A watcher process of `path` (WATCHER), once it polls."""
        proc = subprocess.Popen([sys.executable, "-c", WATCHER, path, str(idle)], stdout=subprocess.PIPE, text=True)
        self.addCleanup(proc.stdout.close)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        self.assertEqual(proc.stdout.readline().strip(), "ready")
        return proc

    def api(self, method, path, body=None, headers=None, sock=None):
        """One request to the daemon's REST API (a fresh connection); a Reply."""
        conn = UnixHTTPConnection(sock or self.fs.api_socket)
        try:
            return http_request(conn, method, path, body, headers)
        finally:
            conn.close()

    def curl(self, *args, sock=None, setpriv=None):
        """curl on the API socket (or, with a URL of http://127.0.0.1:PORT, over TCP if `sock`
        is ""): (the final HTTP status, its head's text, the body's text). `setpriv`: the
        arguments of setpriv(1) to run it as another user ("--reuid", "nobody", ...)."""
        where = ["--unix-socket", sock or self.fs.api_socket] if sock != "" else []
        command = ["curl", "-sS", "-i", *where, *args]
        if setpriv:
            command = ["setpriv", *setpriv, *command]
        r = subprocess.run(command, capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        while True:  # past any 100 Continue
            head, _, out = out.partition("\r\n\r\n")
            status = int(head.split()[1])
            if status != 100:
                return status, head + "\r\n", out

    def sh(self, script, shell="bash"):
        """Runs `script` in the mount; returns (exit status, stdout, stderr)."""
        r = subprocess.run([shell, "-c", script], cwd=self.fs.mnt, capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout, r.stderr

    def ok(self, script):
        rc, out, err = self.sh(script)
        self.assertEqual(rc, 0, "%r failed: %s" % (script, err))
        return out

    def fails(self, script, message):
        """Asserts `script` fails and prints `message` (an strerror text) on stderr."""
        rc, out, err = self.sh(script)
        self.assertNotEqual(rc, 0, "%r succeeded" % script)
        self.assertIn(message, err)
        return err

    def errno_of(self, action):
        """Runs `action` (a callable making syscalls); returns 0 or the errno it failed with."""
        try:
            action()
        except OSError as e:
            return e.errno
        return 0

    def write_file(self, path, data, flags=os.O_WRONLY | os.O_TRUNC, chunk=None):
        """open(flags) + write(2) of `data` (in `chunk`-sized pieces) + close; returns 0 or the errno."""
        if isinstance(data, str):
            data = data.encode()
        fd = os.open(self.fs.path(path), flags, 0o600)
        try:
            step = chunk or max(len(data), 1)
            done = 0
            while done < len(data):  # a short write is retried from where it stopped
                done += os.write(fd, data[done:done + step])
        except OSError as e:
            try:
                os.close(fd)
            except OSError:
                pass
            return e.errno
        try:
            os.close(fd)
        except OSError as e:
            return e.errno
        return 0

    def read(self, *parts):
        with open(self.fs.path(*parts), "rb") as f:
            return f.read().decode(errors="surrogateescape")

    def uuids(self):
        return sorted(os.listdir(self.fs.path("accelerators")))

    def acc(self, uuid, name):
        return self.read("accelerators", uuid, name)

    def snapshot(self, uuid):
        """Every listed file of accelerator `uuid`, for comparing before/after a refusal."""
        return {f: self.acc(uuid, f) for f in sorted(LISTED) if f != "error"}

    def fake_uuid(self, device_type):
        for name in sorted(os.listdir(self.fs.path("by-name"))):
            if name.startswith(device_type.lower() + "-"):
                return os.path.basename(os.readlink(self.fs.path("by-name", name)))
        raise AssertionError("no fake " + device_type)

    def make(self, uuid):
        os.mkdir(self.fs.path("accelerators", uuid))
        return uuid


def free_port():
    """A TCP port on 127.0.0.1 that was free when asked."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A PostgreSQL 15 server of this test only, run as the postgres user: its data
    and its unix socket in a temp folder, a free port on 127.0.0.1. stop() ends it
    (pg_ctl, then by the postmaster's pid if it does not go); kill() is kill -9 of
    the postmaster. Never a system service."""

    BIN = "/usr/lib/postgresql/15/bin"

    def __init__(self):
        import pwd
        self.user = pwd.getpwnam("postgres")
        self.dir = tempfile.mkdtemp(prefix="cyborgfs-pg-")
        os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.as_postgres([self.BIN + "/initdb", "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8",
                          "-D", self.data])
        self.start()

    def as_postgres(self, args, check=True, timeout=60):
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True,
                              check=check, timeout=timeout, cwd=self.dir)

    def start(self):
        options = "-k %s -p %d -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" % (
            self.dir, self.port)
        r = self.as_postgres([self.BIN + "/pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60",
                              "start"], check=False)
        if r.returncode != 0:
            raise AssertionError("PostgreSQL did not start: %s %s\n%s" % (r.stdout, r.stderr, self.log_text()))

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        pid = self.postmaster_pid()
        if pid is None:
            return
        self.as_postgres([self.BIN + "/pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop"],
                         check=False)
        if self.postmaster_pid() is not None:  # still there: by its pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_for(lambda: not os.path.exists("/proc/%d" % pid), what="the postmaster to die")
            try:
                os.unlink(os.path.join(self.data, "postmaster.pid"))
            except FileNotFoundError:
                pass

    def kill(self):
        """kill -9 of the postmaster; its backends end when they notice."""
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not os.path.exists("/proc/%d" % pid), what="the postmaster to die")

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def conninfo(self, tcp=False):
        host = "127.0.0.1" if tcp else self.dir
        return "host=%s port=%d user=postgres dbname=postgres" % (host, self.port)

    def psql(self, sql):
        """Rows of `sql` as lists of strings (psql -At, fields split on |)."""
        r = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-p", str(self.port),
                            "-U", "postgres", "-d", "postgres", "-c", sql], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise AssertionError("psql: %s" % r.stderr)
        return [line.split("|") for line in r.stdout.splitlines() if line]
