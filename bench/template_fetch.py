"""A template's first use on a cluster member that lacks it: fetched from the member holding
it (streamed over the members' TLS API, verified, imported) inside `corral create`, side by
side with what an operator would do by hand (`template export` on the holder, `template
import` on the other member), and the receiving corrald's peak memory growth (the copy is
streamed: it must not grow with the template's size).

Two fake-driver corrald on loopback and a one-member etcd; the template's root filesystem is
SIZE MiB of random bytes (gzip cannot shrink it).

Run: .venv/bin/python bench/template_fetch.py [--size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.templates.artifact import export_template, sha256_file
from tests.integration.conftest import Daemon, start_daemon, stop_daemon, write_fake_template
from tests.integration.etcd_lab import etcd_lab

MIB = 1024 * 1024


def make_template(directory: Path, name: str, size_mib: int) -> Path:
    directory.mkdir(parents=True)
    blob = directory.parent / "blob"
    with blob.open("wb") as out:
        for _ in range(size_mib):
            out.write(os.urandom(MIB))
    with tarfile.open(directory / "rootfs.tar.gz", "w:gz", compresslevel=1) as tar:
        tar.add(blob, "data/blob")
    blob.unlink()
    (directory / "metadata.json").write_text(json.dumps({
        "name": name, "version": "1", "os": "busybox", "arch": "x86_64",
        "resources": {"disk": 2 * size_mib * MIB + 64 * MIB},
        "files": {"rootfs.tar.gz": sha256_file(directory / "rootfs.tar.gz")},
    }))
    return directory


def peak_rss_mib(d: Daemon) -> float:
    for line in Path(f"/proc/{d.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(d: Daemon, *args: str) -> float:
    began = time.perf_counter()
    d.cli(*args, check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256, help="root filesystem MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tmplshare-bench-", dir=os.environ.get("TMPDIR")) \
            as tmp:
        root = Path(tmp)
        artifact = root / "big.corral-template"
        export_template(make_template(root / "src", "big", args.size), artifact)
        with etcd_lab(root / "etcd", size=1) as etcd:
            hosts: dict[str, Daemon] = {}
            try:
                for node in ("alpha", "beta"):
                    write_fake_template(root / node / "templates")
                    hosts[node] = start_daemon(root / node, node=node)
                alpha, beta = hosts["alpha"], hosts["beta"]
                alpha.cli("cluster", "init", "--etcd", ",".join(etcd.endpoints), check=True)
                beta.cli("cluster", "join", alpha.url, "--token", alpha.token, check=True)
                alpha.cli("template", "import", str(artifact), check=True)

                before = peak_rss_mib(beta)
                first = timed(alpha, "create", "f1", "--type", "ct", "--template", "big",
                              "--node", "beta")
                after = peak_rss_mib(beta)
                second = timed(alpha, "create", "f2", "--type", "ct", "--template", "big",
                               "--node", "beta")
                for name in ("f1", "f2"):
                    beta.cli("delete", name, check=True)
                beta.cli("template", "delete", "big", check=True)
                by_hand = timed(alpha, "template", "export", "big", str(root / "copy")) \
                    + timed(beta, "template", "import", str(root / "copy"))
                print(f"template: {artifact.stat().st_size / MIB:.0f} MiB artifact")
                print(f"by hand (export on alpha + import on beta): {by_hand:.2f} s")
                print(f"first create on beta (fetch + verify + import + create): {first:.2f} s")
                print(f"second create on beta (installed): {second:.2f} s")
                print(f"fetch overhead / by hand: {(first - second) / by_hand:.2f}x")
                print(f"beta's peak RSS: {before:.1f} MiB before the fetch, {after:.1f} MiB "
                      f"after (+{after - before:.1f} MiB)")
            finally:
                for d in hosts.values():
                    stop_daemon(d)


if __name__ == "__main__":
    main()
