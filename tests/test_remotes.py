"""A shared DVC remote, for real: `make push` from one clone, `make pull` into a fresh one.

Two kinds of remote, each a real server on 127.0.0.1 (tests/servers.py): OpenSSH through
dvc-ssh, and SeaweedFS's S3 through dvc-s3, with its credentials enforced. For each: the
fresh clone gets every artifact with the committed hashes and `dvc status` is clean; a
corrupted object in the remote fails the pull instead of reaching the workspace; an
unreachable remote fails in one line.

    pytest tests/test_remotes.py -s     # -s also prints each remote's push and pull seconds
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import yaml

from mnist_basics.pipeline.remote import targets
from tests.harness import (
    borrow_venv,
    engine_env,
    git_commit,
    make_tiny_archive,
    set_params,
    sh,
    tiny_project,
)
from tests.servers import (
    ServerUnavailable,
    free_ports,
    non_loopback_sockets,
    s3_server,
    sshd_server,
)

SERVERS = {"ssh": sshd_server, "s3": s3_server}


@pytest.fixture(scope="module")
def made(tmp_path_factory, finished_project) -> tuple[Path, dict]:
    """A tiny project after `dvc repro` of both dvc.yaml files, committed: what a user would
    push (the spread's runs are in git, its page too)."""
    root = tmp_path_factory.mktemp("remotes")
    proj, archive = finished_project("dvc", root / "proj")  # the chapter's dvc.yaml
    borrow_venv(proj)
    home = root / "home"  # nothing of the user's ~/.ssh or ~/.aws is read
    home.mkdir()
    env = {k: v for k, v in engine_env(MNIST_SAMPLE_URL=str(archive[0])).items()
           if not k.startswith(("AWS_", "SSH_"))}
    env.update(HOME=str(home), DVC_SITE_CACHE_DIR=str(root / "dvc-site"), AWS_MAX_ATTEMPTS="1")
    set_params(proj, spread={"seeds": [0]}, sweep={"values": [0.1]})  # a spread of 5 jobs
    sh("dvc", "repro", cwd=proj, env=env)  # the chapter's page, which lists the spread's params
    sh("dvc", "repro", "spread/dvc.yaml", cwd=proj, env=env)
    git_commit(proj, "a run")
    return proj, env


@pytest.fixture(params=sorted(SERVERS))
def server(request, tmp_path):
    try:
        with SERVERS[request.param](tmp_path) as srv:
            yield request.param, srv
            assert non_loopback_sockets(srv.pid) == []  # nothing but loopback, ever
    except ServerUnavailable as e:
        pytest.fail(str(e), pytrace=False)


def configure(proj: Path, srv, env: dict, *, local_only: bool = False) -> None:
    """The remote's URL in .dvc/config (committed), its credentials in .dvc/config.local."""
    (proj / ".dvc/config.local").unlink(missing_ok=True)  # another kind's credentials
    for cmd in srv.dvc_commands("store"):
        if local_only and "--local" not in cmd:
            continue
        sh("dvc", *cmd, cwd=proj, env=env)


def clone(made: Path, dest: Path, srv, env: dict) -> Path:
    sh("git", "clone", "-q", str(made), str(dest), env=env)
    borrow_venv(dest)
    configure(dest, srv, env, local_only=True)  # secrets are per clone, never committed
    return dest


def locked(proj: Path) -> dict[str, str]:
    stages = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    return {o["path"]: o["md5"] for s in stages.values() for o in s["outs"]}


def make(target: str, cwd: Path, env: dict):
    return sh("make", "--no-print-directory", target, cwd=cwd, env=env, check=False,
              timeout=300)


def corrupt(kind: str, srv, md5: str) -> None:
    """Overwrite the object that holds `md5` in the remote with other bytes of the same size."""
    key = f"files/md5/{md5[:2]}/{md5[2:]}"
    if kind == "ssh":
        path = srv.remote_dir / key
        path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    else:
        c = srv.client()
        full = f"{srv.prefix}/{key}"
        body = c.get_object(Bucket=srv.bucket, Key=full)["Body"].read()
        c.put_object(Bucket=srv.bucket, Key=full, Body=bytes(b ^ 0xFF for b in body))


@pytest.mark.slow
def test_push_then_pull_into_a_fresh_clone_and_a_corrupt_object_is_caught(made, server,
                                                                          tmp_path):
    kind, srv = server
    proj, env = made
    configure(proj, srv, env)
    git_commit(proj, f"the {kind} remote")
    start = time.monotonic()
    r = make("push", proj, env)
    pushed = time.monotonic() - start
    assert r.returncode == 0, r.stderr

    fresh = clone(proj, tmp_path / "fresh", srv, env)
    start = time.monotonic()
    r = make("pull", fresh, env)
    print(f"\n{kind}: make push {pushed:.1f} s, make pull {time.monotonic() - start:.1f} s")
    assert r.returncode == 0, r.stderr
    want = locked(proj)
    assert {p: hashlib.md5((fresh / p).read_bytes()).hexdigest() for p in want} == want
    # What make pull took: the chapter (params.yaml `datasets`) and the spread.
    assert "up to date" in sh("dvc", "status", *targets(), cwd=fresh, env=env).stdout

    # One object goes bad in the remote: the pull fails, and the bad bytes are nowhere.
    victim = "models/mlp.safetensors"
    corrupt(kind, srv, want[victim])
    other = clone(proj, tmp_path / "other", srv, env)
    r = make("pull", other, env)
    assert r.returncode != 0
    assert not (other / victim).exists()
    assert (other / "models/linear.safetensors").exists()  # the intact ones arrived


@pytest.mark.slow
def test_an_unreachable_remote_fails_in_one_line(made, server, tmp_path):
    kind, srv = server
    proj, env = made
    configure(proj, srv, env)
    git_commit(proj, f"the {kind} remote")
    fresh = clone(proj, tmp_path / "fresh", srv, env)
    (closed,) = free_ports(1)
    if kind == "ssh":
        sh("dvc", "remote", "modify", "--local", "store", "port", str(closed), cwd=fresh, env=env)
    else:
        sh("dvc", "remote", "modify", "--local", "store", "endpointurl",
           f"http://127.0.0.1:{closed}", cwd=fresh, env=env)
    r = sh("python", "-m", "mnist_basics", "pull", cwd=fresh, env=env, check=False, timeout=300)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: dvc pull: failed to connect") and str(closed) in r.stderr


@pytest.mark.slow
def test_s3_refuses_a_wrong_key(made, tmp_path):
    proj, env = made
    with s3_server(tmp_path) as srv:
        configure(proj, srv, env)
        sh("dvc", "remote", "modify", "--local", "store", "secret_access_key", "wrong",
           cwd=proj, env=env)
        r = sh("python", "-m", "mnist_basics", "push", cwd=proj, env=env, check=False,
               timeout=300)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "signature we calculated does not match" in r.stderr or "Forbidden" in r.stderr
        assert srv.client().list_objects_v2(Bucket=srv.bucket).get("KeyCount", 0) == 0


def test_push_and_pull_need_a_default_remote(tmp_path):
    proj = tiny_project(tmp_path / "proj", make_tiny_archive_in(tmp_path))
    for cmd in ("push", "pull"):
        r = sh("python", "-m", "mnist_basics", cmd, cwd=proj, check=False)
        assert r.returncode == 1 and "no default DVC remote" in r.stderr, r.stderr


def make_tiny_archive_in(tmp_path: Path):
    (tmp_path / "archive").mkdir()
    return make_tiny_archive(tmp_path / "archive")
