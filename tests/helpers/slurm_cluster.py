"""A real one-node Slurm cluster on this machine, for the launch tests (tests/test_tools/test_cluster_launch.py).

``LocalSlurm(root)`` writes a generated ``slurm.conf`` into the folder ``root`` and starts, as child processes
in the foreground, Debian's ``munged`` (its key, socket, pid, seed and log files in ``root``), ``slurmctld``
and ``slurmd`` for one node named after this host with address 127.0.0.1, on two free loopback ports. All their
state (spool, state save, pid and log files) stays in ``root``; the clients (``srun``, ``squeue``, ``scancel``)
find the cluster through ``SLURM_CONF`` in ``env()``. ``stop()`` cancels every job, asks the controller to shut
down and then ends the three daemons by their process ids; it is safe to call more than once.

``ensure_slurm_installed()`` installs Debian's packages (``slurmctld slurmd slurm-client munge``) when a daemon is
missing and we are root; it returns the reason why not otherwise (the tests skip with it).
"""

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

PACKAGES = ['slurmctld', 'slurmd', 'slurm-client', 'munge']
PROGRAMS = ['munged', 'slurmctld', 'slurmd', 'srun', 'squeue', 'scancel', 'scontrol', 'sinfo']


def _missing_programs() -> List[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not os.path.exists(f'/usr/sbin/{p}')]


def ensure_slurm_installed() -> Optional[str]:
    """Install Slurm and munge with apt-get when missing (root only). Returns None when they are installed,
    else the reason they are not (a skip reason). A failed install as root raises, with apt-get's output."""
    missing = _missing_programs()
    if not missing:
        return None
    if os.geteuid() != 0:
        return f'Slurm is not installed ({", ".join(missing)} missing) and installing it needs root: ' + (
            'apt-get install ' + ' '.join(PACKAGES)
        )
    if shutil.which('apt-get') is None:
        return f'Slurm is not installed ({", ".join(missing)} missing) and this system has no apt-get'
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    install = ['apt-get', 'install', '-y', '-q', '--no-install-recommends', *PACKAGES]
    print(f'installing Debian packages {" ".join(PACKAGES)} (missing: {", ".join(missing)})', flush=True)
    proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:  # e.g. a fresh machine whose package lists were never downloaded
        update = subprocess.run(['apt-get', 'update', '-q'], env=env, capture_output=True, text=True, timeout=900)
        proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f'apt-get could not install {PACKAGES}:\n{update.stdout[-2000:]}{proc.stderr[-3000:]}')
    still = _missing_programs()
    if still:
        raise RuntimeError(f'installed {PACKAGES} but {still} are still missing')
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _program(name: str) -> str:
    return shutil.which(name) or f'/usr/sbin/{name}'


class DaemonError(RuntimeError):
    """A daemon did not start; the message holds the end of its log."""


class LocalSlurm:
    """One Slurm node with ``cpus`` CPUs (no GPUs) and one partition ``partition``; state under ``root``."""

    def __init__(self, root: Path, partition: str = 'mmbasis', cpus: int = 2) -> None:
        self.root, self.partition, self.cpus = Path(root), partition, cpus
        self.node = socket.gethostname().split('.')[0]
        self.procs: Dict[str, subprocess.Popen] = {}
        self.conf = self.root / 'slurm.conf'

    # ---------------------------------------------------------------- set-up
    def _write_files(self) -> None:
        r = self.root
        # munged refuses a socket folder that not everybody can traverse, and a key that others can read
        r.mkdir(parents=True, exist_ok=True)
        r.chmod(0o755)
        for sub in ('munge', 'spool/ctld', 'spool/d', 'log'):
            (r / sub).mkdir(parents=True, exist_ok=True)
        (r / 'munge').chmod(0o755)
        key_dir = r / 'munge-key'
        key_dir.mkdir(mode=0o700, exist_ok=True)
        key = key_dir / 'munge.key'
        with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400), 'wb') as f:
            f.write(os.urandom(1024))
        self.munge_socket = r / 'munge' / 'munge.socket'
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines = [
            'ClusterName=mmbasistest',
            f'SlurmctldHost={self.node}(127.0.0.1)',
            f'SlurmctldPort={_free_port()}',
            f'SlurmdPort={_free_port()}',
            f'SlurmUser={user}',
            f'SlurmdUser={user}',  # root normally; a non-root user runs slurmd for its own jobs only
            'AuthType=auth/munge',
            'CredType=cred/munge',
            f'AuthInfo=socket={self.munge_socket}',
            f'StateSaveLocation={r}/spool/ctld',
            f'SlurmdSpoolDir={r}/spool/d',
            f'SlurmctldPidFile={r}/slurmctld.pid',
            f'SlurmdPidFile={r}/slurmd.pid',
            f'SlurmctldLogFile={r}/log/slurmctld.log',
            f'SlurmdLogFile={r}/log/slurmd.log',
            'SlurmctldDebug=info',
            'SlurmdDebug=info',
            # no cgroups, no accounting: nothing outside this folder is touched
            'ProctrackType=proctrack/linuxproc',
            'TaskPlugin=task/none',
            'JobAcctGatherType=jobacct_gather/none',
            'AccountingStorageType=accounting_storage/none',
            'JobCompType=jobcomp/none',
            'MpiDefault=none',
            'SwitchType=switch/none',
            'SchedulerType=sched/builtin',
            'SelectType=select/cons_tres',
            'SelectTypeParameters=CR_CPU',
            'ReturnToService=2',
            # the node has the CPUs written here whatever the hardware reports (a 1-core machine still runs 2 tasks)
            'SlurmdParameters=config_overrides',
            f'NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN',
            f'PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP',
        ]
        self.conf.write_text('\n'.join(lines) + '\n')

    def env(self, extra: Optional[dict] = None) -> dict:
        """The environment of a client of this cluster: ``SLURM_CONF``, no ``SLURM_*`` of an outer job."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'SRUN_', 'SBATCH_'))}
        env['SLURM_CONF'] = str(self.conf)
        env['PATH'] = env.get('PATH', '') + ':/usr/sbin:/sbin'
        env.update(extra or {})
        return env

    def _spawn(self, name: str, args: List[str]) -> None:
        log = open(self.root / 'log' / f'{name}.out', 'wb')
        self.procs[name] = subprocess.Popen(
            args, env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root
        )
        log.close()

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for path in sorted((self.root / 'log').glob('*')) + sorted((self.root / 'munge').glob('*.log')):
            text = path.read_text(errors='replace').splitlines()[-lines:]
            out.append(f'---- {path.name} ----\n' + '\n'.join(text))
        return '\n'.join(out)

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise DaemonError(f'{", ".join(dead)} exited while waiting for {what}\n{self.log_tail()}')
            if ready():
                return
            time.sleep(0.2)
        raise DaemonError(f'timed out after {timeout:.0f} s waiting for {what}\n{self.log_tail()}')

    def start(self, timeout: float = 60) -> 'LocalSlurm':
        """Start munged, slurmctld and slurmd; return once the node is idle. Raises ``DaemonError``."""
        self._write_files()
        r = self.root
        self._spawn(
            'munged',
            [
                _program('munged'),
                '--foreground',
                f'--key-file={r}/munge-key/munge.key',
                f'--socket={self.munge_socket}',
                f'--pid-file={r}/munge/munged.pid',
                f'--log-file={r}/munge/munged.log',
                f'--seed-file={r}/munge/munged.seed',
            ],
        )
        self._wait('the munge socket', self.munge_socket.exists, timeout)
        self._spawn('slurmctld', [_program('slurmctld'), '-D', '-f', str(self.conf)])
        self._wait('slurmctld', lambda: self.query(['sinfo', '-h']) is not None, timeout)
        self._spawn('slurmd', [_program('slurmd'), '-D', '-f', str(self.conf), '-N', self.node])
        idle = lambda: (self.query(['sinfo', '-h', '-N', '-o', '%T']) or '') == 'idle'  # noqa: E731
        self._wait('the node to be idle', idle, timeout)
        return self

    # ---------------------------------------------------------------- use
    def query(self, args: List[str]) -> Optional[str]:
        """stdout of a Slurm client command (stripped), or None when it fails."""
        proc = subprocess.run(args, env=self.env(), capture_output=True, text=True, timeout=30)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def job_ids(self, name: Optional[str] = None) -> List[str]:
        out = self.query(['squeue', '-h', '-o', '%i'] + (['--name', name] if name else [])) or ''
        return out.split()

    # ---------------------------------------------------------------- tear-down
    def stop(self, timeout: float = 30) -> None:
        """Cancel all jobs, shut the controller and the node down, end the daemons (by pid) if they linger."""
        if not self.procs:
            return
        ids = self.job_ids() if self.procs.get('slurmctld') and self.procs['slurmctld'].poll() is None else []
        if ids:
            subprocess.run(['scancel', *ids], env=self.env(), capture_output=True, timeout=30)
            deadline = time.monotonic() + timeout
            while self.job_ids() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in ('slurmd', 'slurmctld', 'munged'):  # the reverse of the start order
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self.procs.clear()
