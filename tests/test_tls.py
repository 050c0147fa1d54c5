"""A remote scheduler over TLS: certificate files in the config, encryption required."""

from __future__ import annotations

import time

import numpy as np
import pytest
import yaml

from conftest import (
    BANDWIDTH,
    assert_user_error,
    base_config,
    dask_processes,
    make_tls_files,
    read_labels,
    run_cli,
    sklearn_labels,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def tls_scheduler(tmp_path_factory):
    """(tls:// address, {ca_file, cert_file, key_file}) of a TLS scheduler with one TLS worker."""
    from distributed.security import Security

    work = tmp_path_factory.mktemp("tls-cluster")
    files = make_tls_files(work / "certs")
    tls_args = ("--tls-ca-file", str(files["ca_file"]), "--tls-cert", str(files["cert_file"]),
                "--tls-key", str(files["key_file"]))
    security = Security(tls_ca_file=str(files["ca_file"]), tls_client_cert=str(files["cert_file"]),
                        tls_client_key=str(files["key_file"]), require_encryption=True)
    with dask_processes(work, 1, scheduler_args=("--protocol", "tls", *tls_args),
                        worker_args=("--protocol", "tls", *tls_args), security=security) as cluster:
        assert cluster.address.startswith("tls://127.0.0.1:"), cluster.address
        yield cluster.address, files


def test_tls_run_matches_sklearn(tls_scheduler, blobs, tmp_path):
    address, files = tls_scheduler
    frame, data = blobs
    out = tmp_path / "out"
    tls = {key: str(path) for key, path in files.items()}
    cfg = base_config(data, out, cluster={"address": address, "tls": tls, "connect_timeout": 20}, plot=None)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "job.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert f"connected to {address} (1 workers)" in proc.stderr
    labels = read_labels(out / "labels")
    assert labels["uid"].tolist() == frame["uid"].tolist()
    np.testing.assert_array_equal(labels["cluster"].to_numpy(), sklearn_labels(frame, BANDWIDTH, bin_seeding=True))


def test_tls_scheduler_without_certificates_is_a_clean_user_error(tls_scheduler, blobs, tmp_path):
    address, _ = tls_scheduler
    _, data = blobs
    out = tmp_path / "out"
    cfg = base_config(data, out, cluster={"address": address, "connect_timeout": 5})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    proc = run_cli("run", str(tmp_path / "job.yaml"), "--quiet", timeout=120)
    assert_user_error(proc, "cluster.address", address)
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1, proc.stderr
    assert time.monotonic() - t0 < 5 + 25
    assert not out.exists()


def test_plain_tcp_client_cannot_use_tls_scheduler(tls_scheduler, blobs, tmp_path):
    """tcp:// to a TLS port: the handshake never completes; fail within connect_timeout."""
    address, _ = tls_scheduler
    _, data = blobs
    out = tmp_path / "out"
    tcp = address.replace("tls://", "tcp://")
    cfg = base_config(data, out, cluster={"address": tcp, "connect_timeout": 3})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "job.yaml"), "--quiet", timeout=120)
    assert_user_error(proc, "cluster.address", tcp)
    assert not out.exists()


def test_unreadable_tls_file_is_named(tls_scheduler, blobs, tmp_path):
    address, files = tls_scheduler
    _, data = blobs
    tls = {key: str(path) for key, path in files.items()}
    tls["key_file"] = str(tmp_path / "missing-key.pem")
    cfg = base_config(data, tmp_path / "out", cluster={"address": address, "tls": tls})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    assert_user_error(run_cli("run", str(tmp_path / "job.yaml"), "--quiet"), "cluster.tls.key_file", "missing-key.pem")
