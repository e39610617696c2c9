"""A throw-away single-node SLURM (22.05, Debian packages) for testing the SLURM profile.

One node (this machine) with a fake GPU (``Gres=gpu:1``, ``File=/dev/null``) in two partitions, ``cpu``
(default) and ``gpu``; no accounting (use ``slurm-status-command: squeue``). Everything lives in one state
directory: config, munge key and socket, spool, logs. The daemons are started in the foreground as children
of this process (munged, slurmctld, slurmd), so they are stopped by their pids and nothing else is touched.
Free TCP ports are picked at start, so it does not clash with another instance on the same machine.

Needs root (slurmd launches jobs as the submitting user) and, when the packages are missing, apt-get.

    python tests/slurm/start_slurm.py start /tmp/slurm   # prints `export SLURM_CONF=...`, returns
    SLURM_CONF=/tmp/slurm/slurm.conf sinfo
    python tests/slurm/start_slurm.py stop /tmp/slurm    # cancels jobs, stops the daemons, removes the dir
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")


class SlurmError(RuntimeError):
    pass


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def can_install() -> str | None:
    """None when SLURM is installed or installable here, else the reason why not."""
    if os.geteuid() != 0:
        return "needs root (slurmd runs the jobs as the submitting user; apt-get installs SLURM)"
    if not missing_binaries():
        return None
    if shutil.which("apt-get") is None:
        return f"SLURM is not installed ({', '.join(missing_binaries())} missing) and there is no apt-get"
    return None


def install(timeout: float = 600) -> None:
    """apt-get install slurm-wlm munge, when a binary is missing."""
    if not missing_binaries():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lists = Path("/var/lib/apt/lists")
    if not any(lists.glob("*Packages*")):
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True, timeout=timeout)
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:  # stale package lists: update once and retry
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True, timeout=timeout)
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], env=env,
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or missing_binaries():
        raise SlurmError(f"apt-get install {' '.join(PACKAGES)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4000


class SlurmCluster:
    """Start/stop a one-node SLURM under ``state`` (created; removed by ``stop(remove=True)``)."""

    def __init__(self, state: Path, cpus: int | None = None, mem_mb: int | None = None):
        self.state = Path(state).resolve()
        self.node = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.mem_mb = mem_mb or int(_mem_mb() * 0.8)
        self.conf = self.state / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def bin(self) -> Path:
        return self.state / "bin"

    @property
    def env(self) -> dict[str, str]:
        """The environment for clients (sbatch, squeue, snakemake): SLURM_CONF points here, and bin/ (an srun
        that keeps pointing here) comes first on PATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.bin}:{env.get('PATH', '')}"
        return env

    def _real(self, name: str) -> str:
        path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != self.bin)
        return shutil.which(name, path=path) or f"/usr/bin/{name}"

    def run(self, *cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise SlurmError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def _log_tail(self, name: str, n: int = 3000) -> str:
        path = self.state / "log" / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.state / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        (self.state / "pids.json").write_text(json.dumps({k: p.pid for k, p in self.procs.items()}))

    def _wait(self, what: str, ok, timeout: float, name: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.procs[name].poll() is not None:
                raise SlurmError(f"{name} exited ({self.procs[name].returncode}) while waiting for {what}:\n"
                                 f"{self._log_tail(name)}\n{(self.state / 'log' / (name + '.out')).read_text()[-2000:]}")
            try:
                if ok():
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.5)
        raise SlurmError(f"timed out after {timeout:.0f} s waiting for {what}:\n{self._log_tail(name)}")

    # ------------------------------------------------------------------ config
    def write_config(self) -> None:
        s = self.state
        for sub in ("log", "ctld", "spool", "munge"):
            (s / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(s / "munge", 0o700)
        ctld_port, slurmd_port = _free_ports(2)
        self.conf.write_text(f"""\
# generated by tests/slurm/start_slurm.py: a one-node test cluster
ClusterName=brainuadtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={s}/munge/munge.socket
StateSaveLocation={s}/ctld
SlurmdSpoolDir={s}/spool
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
GresTypes=gpu
MailProg=/bin/true
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={self.node} Default=NO MaxTime=INFINITE State=UP
""")
        (s / "gres.conf").write_text(f"AutoDetect=off\nNodeName={self.node} Name=gpu File=/dev/null\n")
        # The slurm-jobstep plugin drops every SLURM_* variable (SLURM_CONF too) before its nested
        # `srun` inside a job; a real cluster has slurm.conf at the default path (or runs configless),
        # this test cluster must not touch /etc, so its srun finds the config through this wrapper.
        self.bin.mkdir(exist_ok=True)
        srun = self.bin / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {self._real("srun")} "$@"\n')
        srun.chmod(0o755)
        key = s / "munge" / "munge.key"
        if not key.exists():
            subprocess.run([_sbin("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True,
                           timeout=30)
        os.chmod(key, 0o600)

    # ------------------------------------------------------------------ start/stop
    def start(self, timeout: float = 90) -> "SlurmCluster":
        try:
            self._start(timeout)
        except BaseException:
            self.stop(remove=False)
            raise
        return self

    def _start(self, timeout: float) -> None:
        self.write_config()
        m = self.state / "munge"
        self._spawn("munged", [_sbin("munged"), "--foreground", "--force", f"--key-file={m / 'munge.key'}",
                               f"--socket={m / 'munge.socket'}", f"--pid-file={m / 'munged.pid'}",
                               f"--log-file={self.state / 'log' / 'munged.log'}", f"--seed-file={m / 'munge.seed'}"])
        self._wait("the munge socket", lambda: (m / "munge.socket").exists(), 20, "munged")
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-c", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: self.run("scontrol", "ping", timeout=10, check=False).stdout.count("UP") > 0,
                   timeout, "slurmctld")
        self._spawn("slurmd", [_sbin("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])
        self._wait("the node to be idle", self._node_idle, timeout, "slurmd")

    def _node_idle(self) -> bool:
        state = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T", timeout=10).stdout.split()
        if state and any(s.startswith(("down", "drain")) for s in state):
            self.run("scontrol", "update", f"nodename={self.node}", "state=resume", timeout=10, check=False)
        return bool(state) and all(s == "idle" for s in state)

    def stop(self, remove: bool = True, timeout: float = 30) -> None:
        """Cancel this cluster's jobs, stop the daemons this object started (by pid), remove the state dir."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user", "root", timeout=15, check=False)
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                out = self.run("squeue", "-h", "-o", "%i", timeout=10, check=False)
                if out.returncode != 0 or not out.stdout.strip():
                    break
                time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):  # reverse start order
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        if remove:
            shutil.rmtree(self.state, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__)
        return 2
    state = Path(argv[2]).resolve()
    if argv[1] == "start":
        reason = can_install()
        if reason:
            print(f"cannot start SLURM: {reason}", file=sys.stderr)
            return 1
        install()
        cluster = SlurmCluster(state).start()  # the daemons outlive this process (own sessions)
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    pids = json.loads((state / "pids.json").read_text()) if (state / "pids.json").exists() else {}
    env = dict(os.environ, SLURM_CONF=str(state / "slurm.conf"))
    subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True, timeout=15)
    for name in ("slurmd", "slurmctld", "munged"):
        pid = pids.get(name)
        cmdline = Path(f"/proc/{pid}/cmdline")
        if pid and cmdline.exists() and name in cmdline.read_bytes().decode(errors="replace"):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            end = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < end:
                time.sleep(0.2)
    shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
