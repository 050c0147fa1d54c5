"""Shared test fixtures: small multi-file Parquet data, configs, the CLI, Dask and S3 servers.

Everything is real: the CLI runs as a subprocess, clusters are real Dask processes on
127.0.0.1, S3 is a moto server on a free loopback port. Data stay small (a few thousand rows)
so the suite runs quickly on 2 cores.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pandas as pd
import pytest
import yaml

PYTHON = sys.executable
FEATURES = ["a", "b", "c"]
CENTERS = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0], [0.0, 6.0, 6.0]])
BANDWIDTH = 2.0


PER_FILE = {"DASK_DSHIFT__PARTITION_BYTES": "1"}
"""A Parquet input partition per file (per row group), as the tests' multi-file data were laid
out for: by default dshift groups small files of one schema (``dshift.partition-bytes``), which
would make most of them one partition. Tests of that grouping set the size themselves."""


@pytest.fixture(scope="session", autouse=True)
def partition_per_file() -> Iterator[None]:
    """:data:`PER_FILE` for this process and every ``dshift`` subprocess."""
    import dask

    os.environ.update(PER_FILE)
    with dask.config.set({"dshift.partition-bytes": 1}):
        yield
    for key in PER_FILE:
        os.environ.pop(key, None)


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory) -> Iterator[Path]:
    """Logs that do not live next to an output go to $XDG_STATE_HOME: a temporary one here
    (inherited by every ``dshift`` subprocess), not the user's home."""
    path = tmp_path_factory.mktemp("state")
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = old


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: starts real Dask clusters or runs the CLI end to end (part of the default run; "
        "deselect with -m 'not slow')")


# --------------------------------------------------------------------------------------------
# Data


def make_frame(n: int = 4000, seed: int = 0, centers: np.ndarray = CENTERS, std: float = 0.9) -> pd.DataFrame:
    """Blobs with extra non-feature columns: a string id first, a timestamp and an int tag last."""
    rng = np.random.default_rng(seed)
    blob = rng.integers(0, len(centers), n)
    X = centers[blob] + rng.normal(0.0, std, (n, centers.shape[1]))
    frame = pd.DataFrame(X, columns=FEATURES[: centers.shape[1]])
    frame.insert(0, "uid", [f"row-{i:06d}" for i in range(n)])
    frame["ts"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="s")
    frame["note"] = np.where(blob == 0, "first", "other")
    return frame


def write_parquet_files(frame: pd.DataFrame, directory: Path, n_files: int = 4) -> list[Path]:
    """Write ``frame`` as ``n_files`` Parquet files (in row order) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), n_files)):
        path = directory / f"part-{i:03d}.parquet"
        frame.iloc[rows].to_parquet(path, index=False)
        paths.append(path)
    return paths


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (to prove inputs are untouched)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_labels(path: Path | str, storage_options: Optional[dict] = None) -> pd.DataFrame:
    """The labelled output data set, in input order (sorted by ``uid``)."""
    frame = pd.read_parquet(str(path), storage_options=storage_options)
    return frame.sort_values("uid").reset_index(drop=True)


def sklearn_labels(frame: pd.DataFrame, bandwidth: float, **params: Any) -> np.ndarray:
    """scikit-learn's MeanShift labels on the feature columns of ``frame``."""
    from sklearn.cluster import MeanShift

    cols = [c for c in FEATURES if c in frame.columns]
    return MeanShift(bandwidth=bandwidth, **params).fit(frame[cols].to_numpy()).labels_


@pytest.fixture(scope="session")
def blobs(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """(frame, directory): 4,000 rows of 3-D blobs in 4 Parquet files, shared and read-only."""
    frame = make_frame()
    directory = tmp_path_factory.mktemp("blobs") / "data"
    write_parquet_files(frame, directory)
    return frame, directory


#: Partition keys of the Hive test data: a string key (one value needs URI-encoding in a
#: directory name) and an integer key written zero-padded (month=03).
LAKE_CITIES = ["nyc", "san jose", "sf"]
LAKE_MONTHS = [3, 4, 11]


def make_lake_frame(n: int = 3000, seed: int = 11) -> pd.DataFrame:
    """:func:`make_frame` rows plus the ``city`` (str) and ``month`` (int) of their partition."""
    frame = make_frame(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    frame["city"] = rng.choice(LAKE_CITIES, n)
    frame["month"] = rng.choice(LAKE_MONTHS, n)
    return frame


def write_hive(frame: pd.DataFrame, url: str, storage_options: Optional[dict] = None, files_per_dir: int = 2) -> None:
    """Write ``frame`` as ``url/city=<city>/month=<MM>/part-<k>.parquet`` (keys not in the files)."""
    import fsspec
    from urllib.parse import quote

    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    for (city, month), group in frame.groupby(["city", "month"], sort=True):
        directory = f"{root}/city={quote(city, safe='')}/month={month:02d}"
        fs.makedirs(directory, exist_ok=True)
        for k, rows in enumerate(np.array_split(np.arange(len(group)), files_per_dir)):
            with fs.open(f"{directory}/part-{k}.parquet", "wb") as fh:
                group.iloc[rows].drop(columns=["city", "month"]).to_parquet(fh, index=False)


def add_pruned_partition(url: str, storage_options: Optional[dict] = None) -> pd.DataFrame:
    """Add ``city=la/month=03/``: one good file and one corrupt one; returns the good rows.

    Jobs whose filters rule out ``city=la`` must succeed without these rows.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    good = make_frame(n=50, seed=99)
    good["uid"] = [f"la-{i:03d}" for i in range(len(good))]
    fs.makedirs(f"{root}/city=la/month=03", exist_ok=True)
    with fs.open(f"{root}/city=la/month=03/part-0.parquet", "wb") as fh:
        good.to_parquet(fh, index=False)
    fs.pipe(f"{root}/city=la/month=03/part-1.parquet", b"PAR1 this is not a Parquet file PAR1")
    return good


def read_hive_labels(path: Path | str, storage_options: Optional[dict] = None) -> pd.DataFrame:
    """A Hive-partitioned labels/ data set with its keys as plain columns, sorted by ``uid``."""
    frame = pd.read_parquet(str(path), storage_options=storage_options)
    for c in frame.columns:
        if isinstance(frame[c].dtype, pd.CategoricalDtype):
            frame[c] = frame[c].astype(frame[c].cat.categories.dtype)
    return frame.sort_values("uid").reset_index(drop=True)


@pytest.fixture(scope="session")
def hive_lake(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """(frame, directory): 3,000 rows, Hive-partitioned by city and month (18 files), read-only.

    The directory lies below a ``run=1`` directory, which must not become a column.
    """
    frame = make_lake_frame()
    directory = tmp_path_factory.mktemp("lake") / "run=1" / "trips"
    write_hive(frame, str(directory))
    return frame, directory


@pytest.fixture
def parquet_input(tmp_path) -> tuple[pd.DataFrame, Path]:
    """(frame, directory): 900 rows in 3 Parquet files, next to a hidden junk file and a text file."""
    frame = make_frame(n=900, seed=1)
    write_parquet_files(frame, tmp_path / "in", n_files=3)
    (tmp_path / "in" / "_hidden.parquet").write_bytes(b"junk")  # skipped like dask does
    (tmp_path / "in" / "README.txt").write_text("not data")
    return frame, tmp_path / "in"


@pytest.fixture
def threaded_dask() -> Iterator[None]:
    """Compute on the local threaded scheduler (never on a client another test left behind)."""
    import dask

    with dask.config.set(scheduler="threads"):
        yield


# --------------------------------------------------------------------------------------------
# Configs and the CLI


def deep_update(base: dict, updates: dict) -> dict:
    """Recursive dict merge; a value of ``...`` deletes the key."""
    out = copy.deepcopy(base)
    for key, value in updates.items():
        if value is ...:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def base_config(input_path: Any, output_path: Any, **sections: Any) -> dict:
    """A small, fast job config (explicit bandwidth, bin seeding, 2 local workers)."""
    cfg = {
        "input": {"path": str(input_path), "columns": list(FEATURES)},
        "model": {"bandwidth": BANDWIDTH, "bin_seeding": True},
        "cluster": {"n_workers": 2, "threads_per_worker": 1},
        "output": {"path": str(output_path)},
        "plot": {"sample": 2000},
    }
    return deep_update(cfg, sections)


@pytest.fixture
def write_config(tmp_path) -> Callable[..., Path]:
    """``write_config(cfg_dict_or_text, name="job.yaml") -> path`` in the test's tmp dir."""

    def write(cfg: dict | str, name: str = "job.yaml") -> Path:
        path = tmp_path / name
        path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False))
        return path

    return write


def run_cli(*args: str, cwd: Optional[Path] = None, timeout: float = 240, env: Optional[dict] = None
            ) -> subprocess.CompletedProcess:
    """Run ``python -m dshift.cli ARGS`` as a user would; returns the completed process."""
    return subprocess.run(
        [PYTHON, "-m", "dshift.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli(capsys) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``dshift.cli.main(ARGS)`` in this process (fast: no interpreter start-up).

    Use for checks that do not start a cluster; :func:`run_cli` runs a real subprocess.
    """
    from dshift.cli import main

    def call(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors, --help, --version
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(["dshift", *args], code, captured.out, captured.err)

    return call


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, no traceback, and the last stderr line names every needle; returns that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines, "no error message on stderr"
    last = lines[-1]
    assert last.startswith(("error:", "config error:")), last
    for needle in needles:
        assert needle in last, (needle, last)
    return last


@pytest.fixture(scope="session")
def mounting() -> None:
    """Skip unless this process may mount a tmpfs (tried once, with a 1 MB mount)."""
    probe = Path(tempfile.mkdtemp(prefix="dshift-mount-probe-"))
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            subprocess.run(["umount", str(probe)], check=True)
    except OSError as exc:  # no mount command
        proc = subprocess.CompletedProcess([], 1, "", str(exc))
    finally:
        probe.rmdir()
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here (needs root with CAP_SYS_ADMIN): "
                    f"{proc.stderr.strip()}")


def mount_tmpfs(path: Path, size: str) -> None:
    """Mount a tmpfs of ``size`` (``"8m"``) at ``path``: a real file system that fills up."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=True)  # busy: detach now, free when unused


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a process this suite started (SIGTERM, then SIGKILL), by its own pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# --------------------------------------------------------------------------------------------
# A real dask scheduler + 2 workers on loopback


class DaskProcesses:
    """A ``dask scheduler`` and ``dask worker`` processes started by :func:`dask_processes`."""

    def __init__(self, work: Path, scheduler: subprocess.Popen, address: str, worker_args: tuple,
                 env: dict) -> None:
        self.work, self.scheduler, self.address = work, scheduler, address
        self.worker_args, self.env = worker_args, env
        self.workers: list[subprocess.Popen] = []

    def start_worker(self, name: str, log: Any) -> subprocess.Popen:
        """Start a ``dask worker`` (1 thread) of this scheduler, its output to the file ``log``;
        :func:`dask_processes` stops it on the way out."""
        proc = subprocess.Popen(
            [PYTHON, "-m", "dask", "worker", self.address, "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1", "--name", name, *self.worker_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.work, env=self.env)
        self.workers.append(proc)
        return proc

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` (a process this suite started) and reap it."""
        proc = self.workers[i]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)


@contextlib.contextmanager
def dask_processes(work: Path, n_workers: int, *, scheduler_args: tuple = (), worker_args: tuple = (),
                   env: Optional[dict] = None, security: Any = None, names: Optional[list[str]] = None,
                   log_names: Optional[list[str]] = None) -> Iterator[DaskProcesses]:
    """Start ``python -m dask scheduler`` + ``n_workers`` ``python -m dask worker`` on 127.0.0.1.

    Yields once every worker is connected; stops every process it started on the way out
    (workers started later with :meth:`DaskProcesses.start_worker` too).
    """
    sched_file = work / "scheduler.json"
    log_names = log_names or ["scheduler"] + [f"worker{i}" for i in range(n_workers)]
    logs = [open(work / f"{name}.log", "w") for name in log_names]
    full_env = {**os.environ, **(env or {})}
    scheduler, cluster = None, None
    try:
        scheduler = subprocess.Popen(
            [PYTHON, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--scheduler-file", str(sched_file), "--no-dashboard", *scheduler_args],
            stdout=logs[0], stderr=subprocess.STDOUT, cwd=work, env=full_env)
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sched_file.exists(), (work / f"{log_names[0]}.log").read_text()
        time.sleep(0.1)  # the file is written in one go, but be safe on a loaded machine
        cluster = DaskProcesses(work, scheduler, json.loads(sched_file.read_text())["address"], worker_args, full_env)
        for i in range(n_workers):
            cluster.start_worker(names[i] if names else f"w{i}", logs[i + 1])
        from distributed import Client

        with Client(cluster.address, timeout=60, security=security) as client:
            client.wait_for_workers(n_workers, timeout=120)
        yield cluster
    finally:
        for proc in reversed(cluster.workers if cluster else []):
            _stop(proc)
        if scheduler is not None:
            _stop(scheduler)
        for fh in logs:
            fh.close()


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory) -> Iterator[str]:
    """Address of a ``dask scheduler`` with two ``dask worker`` processes (1 thread each)."""
    work = tmp_path_factory.mktemp("dask-cluster")
    with dask_processes(work, 2, names=["w1", "w2"]) as cluster:
        yield cluster.address


def make_tls_files(directory: Path) -> dict[str, Path]:
    """A throwaway CA and one certificate/key signed by it for 127.0.0.1 (server and client).

    Returns {"ca_file", "cert_file", "key_file"} paths (PEM).
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dshift test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {"ca_file": directory / "ca.pem", "cert_file": directory / "cert.pem", "key_file": directory / "key.pem"}
    files["ca_file"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert_file"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key_file"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    files["key_file"].chmod(0o600)
    return files


# --------------------------------------------------------------------------------------------
# A real S3-compatible server (moto) on loopback


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict]:
    """Start ``moto_server`` on a free port; yields fsspec ``storage_options`` for it."""
    pytest.importorskip("s3fs")
    pytest.importorskip("boto3")
    port = free_port()
    moto = Path(PYTHON).with_name("moto_server")
    cmd = [str(moto)] if moto.exists() else [PYTHON, "-m", "moto.server"]
    proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.2)
        yield {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    finally:
        _stop(proc)


@pytest.fixture
def s3_bucket(s3_server, request) -> str:
    """A fresh bucket on the moto server (named after the test)."""
    import boto3

    name = "t-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    client = boto3.client(
        "s3",
        endpoint_url=s3_server["client_kwargs"]["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
    return name
