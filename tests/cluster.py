"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd as plain processes.

    with slurm_cluster(tmp_path, cpus=4, gpus=1) as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env)  # SLURM_CONF set

Everything lives in one folder: slurm.conf, gres.conf, a munge key and socket, Slurm's state
and spool, and the logs. The daemons run in the foreground under Popen, on free high ports
on 127.0.0.1 (and bind nothing else), each in its own session and with a parent-death
signal, so that a killed test run takes them along. The cluster is ready when `sinfo` shows
the node idle. On exit, also when the body or the start-up raised, every job is cancelled,
each daemon is stopped by the PID Popen gave us (SIGTERM, then SIGKILL), then any process
left that carries this cluster's marker in its environment (job steps outlive slurmd) is
killed by PID, and the stop is checked: nothing is ever killed by name.

Needs root and Debian's `slurmctld slurmd slurm-client munge` (`make test-deps`). There is no
accounting database, so job states come from squeue, which keeps a finished job for
MinJobAge seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import alive, free_ports

INSTALL_HINT = "make test-deps (as root: apt-get install slurmctld slurmd slurm-client munge)"
TOOLS = {  # what we run -> the Debian package that ships it
    "munged": "munge", "munge": "munge", "unmunge": "munge",
    "slurmctld": "slurmctld", "slurmd": "slurmd", "slurmstepd": "slurmd",
    "sinfo": "slurm-client", "sbatch": "slurm-client", "squeue": "slurm-client",
    "scancel": "slurm-client", "scontrol": "slurm-client", "srun": "slurm-client",
}
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
LOOPBACK = "127.0.0.1"
NODE = "localhost"
MARKER = "TEST_SLURM_CLUSTER"  # in the daemons' and clients' environment: this cluster's root
SLURM_VARS = ("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_", "SINFO_")  # what Slurm's clients read
SOCKET_PATH_MAX = 100  # AF_UNIX paths stop at 107 bytes; munged and slurmd make them under root


class SlurmUnavailable(RuntimeError):
    """Slurm or munge is not installed, or we are not root."""


class SlurmStartError(RuntimeError):
    """A daemon did not come up; the message carries the tail of the logs."""


class SlurmStopError(RuntimeError):
    """A daemon or job process of the cluster was still alive after the stop."""


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def missing_tools() -> list[str]:
    """The tools this module needs that are not installed, as 'tool (package)'."""
    return [f"{t} ({p})" for t, p in TOOLS.items() if _which(t) is None]


def _tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} not written)"
    return f"--- {path} (last {min(n, len(lines))} lines) ---\n" + "\n".join(lines[-n:])


def _pids_with_env(value: str) -> list[int]:
    """PIDs of the processes whose environment has MARKER=value: ours, found without names."""
    needle = f"\0{MARKER}={value}\0".encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = b"\0" + f.read() + b"\0"
        except OSError:
            continue
        if needle in env:
            found.append(int(d))
    return found


@dataclass
class SlurmCluster:
    root: Path  # every file of the cluster is under here
    conf: Path  # slurm.conf; SLURM_CONF in env points here
    env: dict[str, str]  # os.environ + SLURM_CONF and the marker: give it to every client
    partition: str
    cpus: int
    memory_mb: int
    gpus: int  # 0, or 1 fake GPU (gres on /dev/null)
    ports: dict[str, int]
    enforce_limits: bool = True  # EnforcePartLimits=ALL; False: Slurm's default, NO
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # start_s, stop_s
    stop_problems: list[str] = field(default_factory=list)  # set on exit

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def run(self, *cmd: str, timeout: float = 30, check: bool = True
            ) -> subprocess.CompletedProcess:
        """A Slurm client run against this cluster, its output as text."""
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-n", NODE, "-o", "%T", check=False).stdout.strip()

    def jobs(self, states: str = "all") -> list[dict[str, str]]:
        """squeue's view of every job it remembers (a finished one for MinJobAge seconds).

        Keys: id, state, reason, gpus (what it asked for: gres:gpu:1, or N/A), cpus, comment
        (Snakemake's slurm plugin writes rule_<name>_wildcards_... there)."""
        keys = ("id", "state", "reason", "gpus", "cpus", "comment")
        fields = "JobID:|,State:|,Reason:|,tres-per-job:|,NumCPUs:|,Comment:"
        out = self.run("squeue", "-h", f"--states={states}", "-O", fields).stdout
        return [dict(zip(keys, line.split("|", len(keys) - 1), strict=True))
                for line in out.splitlines() if line]

    def wait_for_job(self, predicate: Callable[[dict], bool], timeout: float = 60) -> dict:
        """The first job that satisfies predicate(job), or TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job in self.jobs():
                if predicate(job):
                    return job
            time.sleep(0.2)
        raise TimeoutError(f"no job matched within {timeout} s; squeue: {self.jobs()}")

    def client_env(self, base: dict[str, str]) -> dict[str, str]:
        """base, for a client of this cluster: SLURM_CONF, and the marker that lets the stop
        find the jobs' processes; none of the Slurm settings of a job we may be in."""
        env = {k: v for k, v in base.items() if not k.startswith(SLURM_VARS)}
        return {**env, "SLURM_CONF": str(self.conf), MARKER: str(self.root)}

    def logs(self) -> str:
        return "\n".join(_tail(p) for p in sorted((self.root / "log").glob("*.log")))


def _slurm_conf(c: SlurmCluster, min_job_age: int) -> str:
    r = c.root
    gres = f" Gres=gpu:{c.gpus}" if c.gpus else ""
    return f"""\
# One test run's cluster; every path is under {r}.
ClusterName=pytest
SlurmctldHost={NODE}({LOOPBACK})
SlurmctldPort={c.ports['slurmctld']}
SlurmdPort={c.ports['slurmd']}
SrunPortRange={c.ports['srun_lo']}-{c.ports['srun_hi']}
# Bind 127.0.0.1, not every address.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
PlugStackConfig={r}/plugstack.conf
MailProg=/bin/true
# No cgroups, no systemd: track a job's processes by parent PID, pin no CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: squeue keeps a finished job for MinJobAge seconds, and Snakemake's plugin
# treats a job missing from squeue as still running, so this must outlast its polling.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge={min_job_age}
MpiDefault=none
SchedulerType=sched/backfill
# Start a batch job when it is submitted (the default may wait 3 s).
SchedulerParameters=batch_sched_delay=0
# Jobs share the node by cores and memory; one that gives no --mem does not take it all.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
# The node may claim more CPUs and memory than the machine has without being drained.
SlurmdParameters=config_overrides
ReturnToService=2
# Refuse at submission a job the node can never run, rather than leave it pending forever
# (Slurm's default is NO).
EnforcePartLimits={"ALL" if c.enforce_limits else "NO"}
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
CompleteWait=0
{"GresTypes=gpu" if c.gpus else ""}
NodeName={NODE} NodeAddr={LOOPBACK} CPUs={c.cpus} RealMemory={c.memory_mb}{gres} State=UNKNOWN
PartitionName={c.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _wait(what: str, ready: Callable[[], bool], c: SlurmCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for name, p in c.procs.items():
            if p.poll() is not None:
                raise SlurmStartError(f"{name} exited ({p.returncode}) while waiting for "
                                      f"{what}\n{c.logs()}")
        if time.monotonic() > deadline:
            raise SlurmStartError(f"timed out after {timeout} s waiting for {what}\n{c.logs()}")
        time.sleep(0.1)


def _die_with_parent() -> None:  # in the child, between fork and exec
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _spawn(c: SlurmCluster, name: str, argv: list[str]) -> None:
    """A daemon in the foreground, in its own session (a Ctrl-C meant for pytest does not
    reach it: the stop below does), SIGTERMed by the kernel if the test process dies."""
    with open(c.root / "log" / f"{name}.stdout.log", "ab") as out:
        c.procs[name] = subprocess.Popen(argv, env=c.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)


def _stop(c: SlurmCluster, timeout: float = 10) -> list[str]:
    """Cancel the jobs, stop the daemons by PID (newest first), kill stragglers by PID.

    Returns the problems seen; those that start with "still alive" mean a failed stop."""
    problems = []
    t0 = time.monotonic()
    ctld = c.procs.get("slurmctld")
    if ctld is not None and ctld.poll() is None:
        with contextlib.suppress(Exception):
            ids = [j["id"] for j in c.jobs("PENDING,RUNNING,SUSPENDED,COMPLETING")]
            if ids:
                c.run("scancel", *ids, check=False, timeout=10)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and c.jobs("RUNNING,COMPLETING"):
                    time.sleep(0.2)
    for name in reversed(list(c.procs)):  # slurmd, slurmctld, munged
        p = c.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"{name} (pid {p.pid}) ignored SIGTERM; killed")
                p.kill()
                p.wait(5)
    # A job's slurmstepd and its processes outlive slurmd by design; they carry the marker.
    for pid in _pids_with_env(str(c.root)):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            problems.append(f"left-over process {pid}: {cmdline.decode(errors='replace')[:200]}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while True:
        left = [p for p in [*c.pids.values(), *_pids_with_env(str(c.root))] if alive(p)]
        if not left:
            break
        if time.monotonic() > deadline:
            problems.append(f"still alive after the stop: PIDs {left}")
            break
        time.sleep(0.1)
    c.timings["stop_s"] = time.monotonic() - t0
    return problems


@contextlib.contextmanager
def slurm_cluster(tmp_path: Path | str, *, cpus: int | None = None, memory_mb: int = 4096,
                  gpus: int = 0, partition: str = "debug", min_job_age: int = 300,
                  start_timeout: float = 30, enforce_limits: bool = True
                  ) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd; yield a SlurmCluster; stop them all.

    cpus, memory_mb: what the node offers (default: this machine's CPUs); it may claim more
    than the machine has. gpus: 1 gives the node one fake GPU, a gres on /dev/null (Slurm
    needs a device file, and sets CUDA_VISIBLE_DEVICES for a job that asks for it).
    enforce_limits: refuse at submission a job no node can run; False is Slurm's default,
    where such a job pends forever.
    """
    if gpus not in (0, 1):
        raise ValueError("gpus: 0 or 1 (one fake GPU on /dev/null)")
    missing = missing_tools()
    if missing:
        raise SlurmUnavailable(f"the Slurm test cluster needs {', '.join(missing)}: "
                               f"{INSTALL_HINT}")
    if os.geteuid() != 0:
        raise SlurmUnavailable("the Slurm test cluster runs as root (slurmd starts the jobs)")
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    root, own_root = tmp_path / "slurm", None
    if len(str(root)) > SOCKET_PATH_MAX - 40:  # keep the sockets' paths short
        root = own_root = Path(tempfile.mkdtemp(prefix="slurm-"))
        (tmp_path / "slurm").symlink_to(root)
    for d in ("state", "run", "log", "munge", "spool"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "munge", 0o755)  # the key in it is 0400; clients need the socket

    lo = 20000 + (os.getpid() * 37 + int(time.time())) % 10000  # below the ephemeral ports
    ctld, slurmd = free_ports(2)
    ports = {"slurmctld": ctld, "slurmd": slurmd, "srun_lo": lo,
             "srun_hi": lo + 99}
    c = SlurmCluster(root=root, conf=root / "slurm.conf", env={}, partition=partition,
                     cpus=cpus or os.cpu_count() or 1, memory_mb=memory_mb, gpus=gpus,
                     ports=ports, enforce_limits=enforce_limits)
    c.env = c.client_env(dict(os.environ))
    c.env["PATH"] = os.pathsep.join([c.env.get("PATH", ""), *SBIN])

    t0 = time.monotonic()
    try:
        key, sock = root / "munge" / "munge.key", root / "munge" / "munge.socket"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))
        # --force: munged refuses a key or socket under a world-writable /tmp otherwise.
        _spawn(c, "munged", [_which("munged"), "--foreground", "--force", f"--socket={sock}",
                             f"--key-file={key}", f"--pid-file={root}/run/munged.pid",
                             f"--log-file={root}/log/munged.log",
                             f"--seed-file={root}/munge/munged.seed", "--num-threads=2"])

        def munge_ok():
            if not sock.exists():
                return False
            cred = subprocess.run([_which("munge"), "-n", "-S", str(sock)],
                                  capture_output=True, timeout=5)
            return cred.returncode == 0 and subprocess.run(
                [_which("unmunge"), "-S", str(sock)], input=cred.stdout, capture_output=True,
                timeout=5).returncode == 0
        _wait("munged", munge_ok, c, start_timeout)

        c.conf.write_text(_slurm_conf(c, min_job_age))
        (root / "plugstack.conf").write_text("")
        if gpus:  # a count-only gres drains the node: it needs a device file
            (root / "gres.conf").write_text(f"AutoDetect=off\nNodeName={NODE} Name=gpu "
                                            "File=/dev/null\n")
        _spawn(c, "slurmctld", [_which("slurmctld"), "-D", "-f", str(c.conf)])
        _wait("slurmctld", lambda: "UP" in c.run("scontrol", "ping", check=False).stdout,
              c, start_timeout)
        _spawn(c, "slurmd", [_which("slurmd"), "-D", "-f", str(c.conf), "-N", NODE])
        _wait(f"node {NODE} idle in sinfo", lambda: c.node_state() == "idle", c,
              start_timeout)
        c.timings["start_s"] = time.monotonic() - t0
    except BaseException:
        problems = _stop(c)
        _drop_root(own_root, tmp_path)
        if any(p.startswith("still alive") for p in problems):
            raise SlurmStopError("; ".join(problems)) from None
        raise
    try:
        yield c
    finally:
        c.stop_problems = problems = _stop(c)
        _drop_root(own_root, tmp_path)
        if any(p.startswith("still alive") for p in problems):
            raise SlurmStopError("the Slurm test cluster did not stop: " + "; ".join(problems))
        if problems:
            warnings.warn("Slurm test cluster stop: " + "; ".join(problems), stacklevel=2)


def _drop_root(own_root: Path | None, tmp_path: Path) -> None:
    """Keep the logs beside the test; remove the short folder made for the sockets."""
    if own_root is not None:
        with contextlib.suppress(OSError):
            (tmp_path / "slurm").unlink()
            shutil.copytree(own_root / "log", tmp_path / "slurm-logs")
            shutil.rmtree(own_root)
