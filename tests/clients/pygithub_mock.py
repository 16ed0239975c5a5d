#!/usr/bin/env python3
"""Drives `ghauthz mock-github` with a GitHub client written by others (PyGithub), and checks
its answers against what the world file says (docs/world.md, "What the mock GitHub answers").

    python3 -m venv /tmp/pyenv && /tmp/pyenv/bin/pip install -r tests/clients/requirements.txt
    /tmp/pyenv/bin/python tests/clients/pygithub_mock.py target/debug/ghauthz [--world FILE] [--no-schema] [-v]

It starts `<ghauthz> mock-github --world fixtures/worlds/acme.toml`, reads the one JSON line the
mock prints (`{"github_api": URL, "google_jwks": URL, "token": T}`), and runs every check below,
each on its own: a failing check is reported with its error and the others still run. Every
answer received (PyGithub's and those of `requests` used directly) must carry
`x-github-request-id`, and, unless `--no-schema`, every JSON body must validate against GitHub's
schema for its operation and status (`fixtures/github-openapi/schemas.json`, formats checked).
Expectations are computed from the world file (read with tomllib), not written here.

The world must have no `[[faults]]`: a fault's answers are not the healthy ones these checks
expect (fixtures/worlds/acme.toml and roles.toml pass; faults.toml fails by design).

Exits 0 when every check passes, 1 when any fails, 2 when the mock cannot be started. The mock
process is always stopped.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import requests

from github import Auth, Github
from github.GithubException import BadCredentialsException, GithubException, UnknownObjectException

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORLD = REPO_ROOT / "fixtures" / "worlds" / "acme.toml"
SCHEMAS = REPO_ROOT / "fixtures" / "github-openapi" / "schemas.json"

# --------------------------------------------------------------------------------------------
# The world, and what the mock must answer from it (docs/world.md, "Effective role").

RANK = {"read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
LEGACY = {"read": "read", "triage": "read", "write": "write", "maintain": "write", "admin": "admin"}


def parse_role(text: str) -> tuple[int, str, str]:
    """(rank, reported name, base) of a world role: `write` or `custom:<name>:<base>`."""
    if text.startswith("custom:"):
        name, base = text[len("custom:"):].rsplit(":", 1)
        return RANK[base], name, base
    return RANK[text], text, text


class World:
    def __init__(self, path: Path):
        with open(path, "rb") as f:
            self.raw = tomllib.load(f)
        self.users = {u["login"].lower(): u for u in self.raw.get("users", [])}
        self.orgs = {o["login"].lower(): o for o in self.raw.get("orgs", [])}
        self.repos = self.raw.get("repos", [])

    def login(self, login: str) -> str:
        """The login as the world declares it."""
        return self.users[login.lower()]["login"]

    def account(self, login: str) -> dict:
        """{login, id, type} of a user or an organization."""
        if login.lower() in self.orgs:
            o = self.orgs[login.lower()]
            return {"login": o["login"], "id": o["id"], "type": "Organization"}
        u = self.users[login.lower()]
        return {"login": u["login"], "id": u["id"], "type": "User"}

    def repo(self, full_name: str) -> dict:
        owner, name = full_name.split("/")
        for r in self.repos:
            if r["owner"].lower() == owner.lower() and r["name"].lower() == name.lower():
                return r
        raise KeyError(full_name)

    def full_name(self, repo: dict) -> str:
        return f"{self.account(repo['owner'])['login']}/{repo['name']}"

    def effective(self, login: str, repo: dict) -> tuple[str, str] | None:
        """(base role, reported role name) of `login` on `repo`, or None; the name is None when
        two grants of different names tie and the world's rules do not say which is reported."""
        login = login.lower()
        grants: list[tuple[int, str, str, bool]] = []  # rank, name, base, direct
        owner = repo["owner"].lower()
        if owner in self.orgs:
            org = self.orgs[owner]
            owners = [x.lower() for x in org.get("owners", [])]
            members = [x.lower() for x in org.get("members", [])] + owners
            if login in owners:
                grants.append((RANK["admin"], "admin", "admin", False))
            base = org.get("base_permission", "read")
            if login in members and base != "none":
                grants.append((RANK[base], base, base, False))
            for team in org.get("teams", []):
                if login in [x.lower() for x in team.get("members", [])]:
                    role = {k.lower(): v for k, v in team.get("repos", {}).items()}.get(repo["name"].lower())
                    if role:
                        grants.append((*parse_role(role), False))
        elif owner == login:
            grants.append((RANK["admin"], "admin", "admin", False))
        direct = {k.lower(): v for k, v in repo.get("roles", {}).items()}.get(login)
        if direct:
            grants.append((*parse_role(direct), True))
        if not grants:
            return None
        top = max(g[0] for g in grants)
        tied = [g for g in grants if g[0] == top]
        base = tied[0][2]
        directs = [g for g in tied if g[3]]
        if directs:
            return base, directs[0][1]
        names = {g[1] for g in tied}
        return base, (names.pop() if len(names) == 1 else None)

    def permission(self, login: str, repo: dict) -> tuple[str, str | None]:
        """What `.../collaborators/{login}/permission` answers: (permission, role_name)."""
        eff = self.effective(login, repo)
        if eff is None:
            return ("none", "") if repo["private"] else ("read", "read")
        return LEGACY[eff[0]], eff[1]

    def permissions_hash(self, login: str, repo: dict) -> dict:
        eff = self.effective(login, repo)
        rank = RANK[eff[0]] if eff else 0
        return {
            "admin": rank >= RANK["admin"],
            "maintain": rank >= RANK["maintain"],
            "push": rank >= RANK["write"],
            "triage": rank >= RANK["triage"],
            "pull": rank >= RANK["read"],
        }

    def user_repos(self, login: str) -> list[str]:
        """GET /user/repos for `login`: full names, ascending (GitHub's default `sort=full_name`)."""
        mine = [self.full_name(r) for r in self.repos if self.effective(login, r) is not None]
        return sorted(mine, key=str.lower)


# --------------------------------------------------------------------------------------------
# Every answer received, recorded (PyGithub and `requests` both send through requests.Session).

RECORDED: list[dict] = []
_send = requests.Session.send


def _recording_send(self, request, **kwargs):
    response = _send(self, request, **kwargs)
    RECORDED.append(
        {
            "method": request.method,
            "url": request.url,
            "status": response.status_code,
            "headers": dict(response.headers),
            "body": response.content,  # read now; requests keeps it for the caller
        }
    )
    return response


requests.Session.send = _recording_send


# Request path -> operation key of schemas.json.
OPERATIONS = [
    ("GET", r"/(repos/[^/]+/[^/]+|repositories/\d+)", "GET /repos/{owner}/{repo}"),
    ("GET", r"/(repos/[^/]+/[^/]+|repositories/\d+)/collaborators", "GET /repos/{owner}/{repo}/collaborators"),
    (
        "GET",
        r"/(repos/[^/]+/[^/]+|repositories/\d+)/collaborators/[^/]+/permission",
        "GET /repos/{owner}/{repo}/collaborators/{username}/permission",
    ),
    ("GET", r"/(repos/[^/]+/[^/]+|repositories/\d+)/installation", "GET /repos/{owner}/{repo}/installation"),
    ("GET", r"/users/[^/]+", "GET /users/{username}"),
    ("GET", r"/users/[^/]+/installation", "GET /users/{username}/installation"),
    ("GET", r"/orgs/[^/]+/installation", "GET /orgs/{org}/installation"),
    ("GET", r"/user/\d+", "GET /user/{account_id}"),
    ("GET", r"/user", "GET /user"),
    ("GET", r"/user/repos", "GET /user/repos"),
    ("GET", r"/installation/repositories", "GET /installation/repositories"),
    ("GET", r"/rate_limit", "GET /rate_limit"),
    ("POST", r"/app/installations/\d+/access_tokens", "POST /app/installations/{installation_id}/access_tokens"),
]


def operation_of(method: str, url: str) -> str | None:
    path = urlsplit(url).path
    for m, pattern, key in OPERATIONS:
        if m == method and re.fullmatch(pattern, path):
            return key
    return None


# --------------------------------------------------------------------------------------------
# Checks.

RESULTS: list[tuple[str, bool, str]] = []
VERBOSE = False


class check:
    """`with check("name"):` runs a block as one check; an exception fails it."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            RESULTS.append((self.name, True, ""))
            if VERBOSE:
                print(f"ok    {self.name}", flush=True)
            return True
        if kind is KeyboardInterrupt:
            return False
        if kind is AssertionError:
            message = str(value) or "assertion failed: " + traceback.extract_tb(tb)[-1].line
        else:
            message = f"{kind.__name__}: {value}"
        message = message.replace("\n", " ")
        if len(message) > 600:
            message = message[:600] + " ..."
        RESULTS.append((self.name, False, message))
        print(f"FAIL  {self.name}: {message}", flush=True)
        return True


def eq(what: str, got, want):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


def raises(exc_type, fn):
    """Calls fn; asserts that it raises exc_type (and returns the exception)."""
    try:
        value = fn()
    except exc_type as e:
        return e
    except GithubException as e:
        raise AssertionError(f"expected {exc_type.__name__}, got {type(e).__name__} {e.status}: {e.data}") from None
    raise AssertionError(f"expected {exc_type.__name__}, got a value: {value!r}")


def run_checks(api: str, install_token: str, world: World, per_page: int) -> None:
    def client(token: str | None, **kw) -> Github:
        auth = Auth.Token(token) if token else None
        return Github(
            base_url=api,
            auth=auth,
            retry=None,
            timeout=15,
            seconds_between_requests=None,
            seconds_between_writes=None,
            **kw,
        )

    inst = client(install_token)
    users = [u["login"] for u in world.raw.get("users", [])]

    # -- repositories, with the installation token
    private = next((r for r in world.repos if r["private"]), None)
    public = next((r for r in world.repos if not r["private"]), None)
    for repo in world.repos:
        full = world.full_name(repo)
        with check(f"installation: get_repo({full})"):
            r = inst.get_repo(full)
            eq("id", r.id, repo["id"])
            eq("name", r.name, repo["name"])
            eq("full_name", r.full_name, full)
            eq("private", r.private, repo["private"])
            eq("visibility", r.visibility, "private" if repo["private"] else "public")
            eq("archived", r.archived, repo.get("archived", False))
            owner = world.account(repo["owner"])
            eq("owner.login", r.owner.login, owner["login"])
            eq("owner.id", r.owner.id, owner["id"])
            eq("owner.type", r.owner.type, owner["type"])
        with check(f"installation: get_repo({repo['id']}) by id (/repositories/{{id}})"):
            r = inst.get_repo(repo["id"])
            eq("id", r.id, repo["id"])
            eq("full_name", r.full_name, full)

    # -- every user's permission on every repository
    for repo in world.repos:
        full = world.full_name(repo)
        for login in users:
            with check(f"installation: {full} permission of {login}"):
                r = inst.get_repo(full)
                want_permission, want_role = world.permission(login, repo)
                eq("get_collaborator_permission", r.get_collaborator_permission(login), want_permission)
                role = r.get_collaborator_role_name(login)
                if want_role is not None:
                    eq("get_collaborator_role_name", role, want_role)
        with check(f"installation: {full} permission of an undeclared login is 404"):
            r = inst.get_repo(full)
            raises(UnknownObjectException, lambda: r.get_collaborator_permission("nobody-declared-this"))

    # -- the roster
    for repo in world.repos:
        full = world.full_name(repo)
        with check(f"installation: {full} get_collaborators() (per_page={per_page})"):
            g = client(install_token, per_page=per_page)
            got = list(g.get_repo(full).get_collaborators())
            holders = [u for u in world.raw.get("users", []) if world.effective(u["login"], repo) is not None]
            holders.sort(key=lambda u: u["id"])
            eq("logins, by id", [c.login for c in got], [u["login"] for u in holders])
            for c in got:
                eff = world.effective(c.login, repo)
                if eff[1] is not None:
                    eq(f"{c.login}.role_name", c.role_name, eff[1])
                eq(f"{c.login}.permissions", _perm(c.permissions), world.permissions_hash(c.login, repo))

    # -- accounts
    samples = [users[0]] + list(world.orgs)[:1]
    for login in samples:
        acct = world.account(login)
        with check(f"get_user({login}) ({acct['type']})"):
            u = inst.get_user(login)
            eq("login", u.login, acct["login"])
            eq("id", u.id, acct["id"])
            eq("type", u.type, acct["type"])
        with check(f"get_user_by_id({acct['id']}) ({acct['type']})"):
            u = inst.get_user_by_id(acct["id"])
            eq("login", u.login, acct["login"])
            eq("type", u.type, acct["type"])
    with check("get_user of an undeclared login is 404"):
        raises(UnknownObjectException, lambda: inst.get_user("nobody-declared-this").id)
    with check("get_user_by_id of an unknown id is 404"):
        unknown = max([u["id"] for u in world.raw.get("users", [])] + [o["id"] for o in world.orgs.values()]) + 1000
        raises(UnknownObjectException, lambda: inst.get_user_by_id(unknown).login)

    # -- user tokens: GET /user, GET /user/repos paged, reversed
    for login in users:
        token = f"user:{login}"
        want = world.user_repos(login)
        with check(f"user {login}: get_user() (GET /user)"):
            me = client(token).get_user()
            eq("login", me.login, world.login(login))
            eq("id", me.id, world.users[login.lower()]["id"])
        with check(f"user {login}: get_user().get_repos() per_page={per_page} ({len(want)} repos)"):
            g = client(token, per_page=per_page)
            repos = list(g.get_user().get_repos())
            eq("full names, full_name ascending", [r.full_name for r in repos], want)
            for r in repos:
                eq(f"{r.full_name} permissions", _perm(r.permissions), world.permissions_hash(login, world.repo(r.full_name)))
        with check(f"user {login}: get_user().get_repos().reversed is the exact reverse"):
            g = client(token, per_page=per_page)
            eq("reversed", [r.full_name for r in g.get_user().get_repos().reversed], list(reversed(want)))
        if len(want) > per_page:
            with check(f"user {login}: /user/repos link header names next, last (page 1) and prev, first (last page)"):
                first = requests.get(f"{api}/user/repos", params={"per_page": per_page},
                                     headers={"Authorization": f"Bearer {token}"}, timeout=15)
                eq("status", first.status_code, 200)
                rels = first.links
                assert "next" in rels and "last" in rels, f"page 1 link rels: {sorted(rels)} ({first.headers.get('link')})"
                last = requests.get(rels["last"]["url"], headers={"Authorization": f"Bearer {token}"}, timeout=15)
                assert "prev" in last.links and "first" in last.links, f"last page link rels: {sorted(last.links)}"
                assert "next" not in last.links, f"last page has next: {last.headers.get('link')}"

    # -- a user's view of every repository
    for repo in world.repos:
        full = world.full_name(repo)
        for login in users:
            eff = world.effective(login, repo)
            if eff is None and repo["private"]:
                with check(f"user {login}: private {full} is 404 to a user without a role"):
                    raises(UnknownObjectException, lambda: client(f"user:{login}").get_repo(full).id)
            else:
                with check(f"user {login}: get_repo({full}).permissions"):
                    r = client(f"user:{login}").get_repo(full)
                    eq("id", r.id, repo["id"])
                    eq("permissions", _perm(r.permissions), world.permissions_hash(login, repo))

    # -- rate limit
    with check("get_rate_limit(): core limit and remaining"):
        rl = inst.get_rate_limit()
        core = rl.resources.core
        eq("core.limit", core.limit, 5000)
        assert 0 <= core.remaining <= core.limit, f"core.remaining {core.remaining} not within 0..{core.limit}"
        eq("rate.limit", rl.rate.limit, 5000)

    # -- credentials
    with check("an unknown token raises BadCredentialsException (401)"):
        e = raises(BadCredentialsException, lambda: client("not-a-token-the-mock-knows").get_repo(world.full_name(public or private)).id)
        eq("status", e.status, 401)
        eq("message", (e.data or {}).get("message"), "Bad credentials")
    login0 = users[0]
    for scheme in ("bearer", "BEARER", "token", "Token"):
        with check(f"scheme {scheme!r} is accepted (GET /user with '{scheme} user:{login0}')"):
            r = requests.get(f"{api}/user", headers={"Authorization": f"{scheme} user:{login0}"}, timeout=15)
            eq("status", r.status_code, 200)
            eq("login", r.json().get("login"), world.login(login0))
    with check("an unknown token is 401 with requests too"):
        r = requests.get(f"{api}/rate_limit", headers={"Authorization": "bearer nope"}, timeout=15)
        # GitHub answers /rate_limit 401 for a bad token as well.
        eq("status", r.status_code, 401)

    # -- conditional requests (docs/world.md, "ETags and conditional requests")
    if private:
        full = world.full_name(private)
        with check("ETag: a matching If-None-Match answers 304, spends nothing, and only to the same token"):
            auth = {"Authorization": f"Bearer {install_token}"}
            first = requests.get(f"{api}/repos/{full}", headers=auth, timeout=15)
            eq("status", first.status_code, 200)
            etag = first.headers.get("etag")
            assert etag, "no ETag on a 200"
            again = requests.get(f"{api}/repos/{full}", headers={**auth, "If-None-Match": etag}, timeout=15)
            eq("status with If-None-Match", again.status_code, 304)
            eq("304 body", again.content, b"")
            before = int(again.headers["x-ratelimit-remaining"])
            third = requests.get(f"{api}/repos/{full}", headers={**auth, "If-None-Match": f"W/{etag}"}, timeout=15)
            eq("status with a weak If-None-Match", third.status_code, 304)
            eq("x-ratelimit-remaining after a 304", int(third.headers["x-ratelimit-remaining"]), before)
            holder = next((u for u in users if world.effective(u, private)), None)
            if holder:
                other = requests.get(f"{api}/repos/{full}", timeout=15,
                                     headers={"Authorization": f"Bearer user:{holder}", "If-None-Match": etag})
                eq(f"status for user:{holder} with the installation's ETag", other.status_code, 200)

    # -- 404 and renamed repositories
    with check("an unknown repository raises UnknownObjectException (404)"):
        owner = (private or public)["owner"]
        e = raises(UnknownObjectException, lambda: inst.get_repo(f"{owner}/no-such-repository-here").id)
        eq("status", e.status, 404)
    renamed = [(r, old) for r in world.repos for old in r.get("renamed_from", [])]
    if not renamed:
        print("note: the world has no renamed_from: the 301 checks are skipped", flush=True)
    for repo, old in renamed:
        owner_login = world.account(repo["owner"])["login"]
        old_full = f"{owner_login}/{old}"
        with check(f"renamed {old_full}: 301 with location {{base}}/repositories/{repo['id']} (requests)"):
            r = requests.get(f"{api}/repos/{old_full}", headers={"Authorization": f"Bearer {install_token}"},
                             allow_redirects=False, timeout=15)
            eq("status", r.status_code, 301)
            eq("location", r.headers.get("location"), f"{api}/repositories/{repo['id']}")
            body = r.json()
            eq("message", body.get("message"), "Moved Permanently")
            eq("url", body.get("url"), f"{api}/repositories/{repo['id']}")
        with check(f"renamed {old_full}: PyGithub follows the 301 to {world.full_name(repo)}"):
            r = inst.get_repo(old_full)
            eq("id", r.id, repo["id"])
            eq("full_name", r.full_name, world.full_name(repo))
            someone = next((u for u in users if world.effective(u, repo)), users[0])
            eq(f"permission of {someone} after the redirect", r.get_collaborator_permission(someone),
               world.permission(someone, repo)[0])
        with check(f"renamed {old_full}: .../collaborators/{{login}}/permission answers 301 to the same path under /repositories/{repo['id']}"):
            r = requests.get(f"{api}/repos/{old_full}/collaborators/{users[0]}/permission",
                             headers={"Authorization": f"Bearer {install_token}"}, allow_redirects=False, timeout=15)
            eq("status", r.status_code, 301)
            eq("location", r.headers.get("location"),
               f"{api}/repositories/{repo['id']}/collaborators/{users[0]}/permission")


def _perm(p) -> dict:
    return {k: getattr(p, k, None) for k in ("admin", "maintain", "push", "triage", "pull")}


def check_recorded(api: str, schema_check: bool) -> None:
    """Every answer carried x-github-request-id; every JSON body validates against its schema."""
    mine = [r for r in RECORDED if r["url"].startswith(api)]
    with check(f"every answer carries x-github-request-id ({len(mine)} answers)"):
        missing = sorted({f"{r['method']} {urlsplit(r['url']).path} {r['status']}" for r in mine
                          if not any(k.lower() == "x-github-request-id" for k in r["headers"])})
        assert not missing, f"{len(missing)} kinds of answers without it, e.g. {missing[:8]}"
    with check("every answer carries x-ratelimit-limit/-remaining/-used/-reset/-resource"):
        names = ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-used", "x-ratelimit-reset",
                 "x-ratelimit-resource"]
        missing = sorted({f"{r['method']} {urlsplit(r['url']).path} {r['status']} lacks {n}" for r in mine
                          for n in names if n not in {k.lower() for k in r["headers"]}})
        assert not missing, f"{len(missing)}: {missing[:8]}"
    if not schema_check:
        return
    from jsonschema import Draft202012Validator, FormatChecker

    with open(SCHEMAS) as f:
        data = json.load(f)
    schemas = data.get("schemas", data)
    validators: dict[str, Draft202012Validator] = {}
    problems: dict[str, list[str]] = {}
    counted: dict[str, int] = {}
    unchecked: set[str] = set()
    for r in mine:
        op = operation_of(r["method"], r["url"])
        if op is None or not r["body"]:
            if r["body"]:
                unchecked.add(f"{r['method']} {urlsplit(r['url']).path} {r['status']}")
            continue
        key = f"{op} {r['status']}"
        if key not in schemas:
            if r["status"] >= 300 and "basic-error" in schemas:
                key = f"basic-error (for {key}, which GitHub does not describe)"
                schema = schemas["basic-error"]
            else:
                unchecked.add(key)
                continue
        else:
            schema = schemas[key]
        v = validators.get(key)
        if v is None:
            v = validators[key] = Draft202012Validator(schema, format_checker=FormatChecker())
        counted[key] = counted.get(key, 0) + 1
        try:
            body = json.loads(r["body"])
        except ValueError as e:
            problems.setdefault(key, []).append(f"{urlsplit(r['url']).path}: not JSON: {e}")
            continue
        for err in v.iter_errors(body):
            where = err.json_path
            problems.setdefault(key, []).append(f"{where}: {err.message[:200]}")
    for key in sorted(counted):
        with check(f"schema: {key} ({counted[key]} bodies)"):
            errs = problems.get(key, [])
            if errs:
                distinct = list(dict.fromkeys(re.sub(r"\[\d+\]", "[*]", e) for e in errs))
                raise AssertionError(f"{len(errs)} errors, {len(distinct)} distinct: " + " | ".join(distinct[:12]))
    if unchecked and VERBOSE:
        print(f"note: answers with no schema to check against: {sorted(unchecked)}", flush=True)


# --------------------------------------------------------------------------------------------
# The mock process.


class Mock:
    def __init__(self, binary: str, world: Path):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [binary, "mock-github", "--world", str(world)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            start_new_session=True,
        )
        atexit.register(self.stop)

    def first_line(self, timeout: float = 30.0) -> dict:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise RuntimeError(f"the mock printed no line within {timeout:.0f} s")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"the mock exited (status {self.proc.wait()}) before printing its line")
            line += chunk
        return json.loads(line.split(b"\n", 1)[0])

    def stderr_tail(self, n: int = 20) -> str:
        self.stderr.seek(0)
        return "\n".join(self.stderr.read().decode(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main() -> int:
    global VERBOSE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ghauthz", help="path to the ghauthz binary")
    parser.add_argument("--world", type=Path, default=DEFAULT_WORLD)
    parser.add_argument("--per-page", type=int, default=2)
    parser.add_argument("--no-schema", action="store_true", help="skip validating bodies against schemas.json")
    parser.add_argument("-v", "--verbose", action="store_true", help="list passing checks too")
    args = parser.parse_args()
    VERBOSE = args.verbose

    logging.getLogger("github").setLevel(logging.WARNING)  # PyGithub logs each redirect it follows
    world = World(args.world)
    if world.raw.get("faults"):
        print("warning: the world has [[faults]]; checks of the faulted paths will fail", file=sys.stderr)
    try:
        mock = Mock(args.ghauthz, args.world)
    except OSError as e:
        print(f"error: could not run {args.ghauthz}: {e}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (mock.stop(), sys.exit(130)))
    try:
        try:
            line = mock.first_line()
            api, token = line["github_api"].rstrip("/"), line["token"]
        except Exception as e:  # noqa: BLE001 - report anything that stops the start
            print(f"error: could not start the mock: {e}\n{mock.stderr_tail()}", file=sys.stderr)
            return 2
        print(f"PyGithub {version('PyGithub')} against {api} "
              f"(world {args.world})", flush=True)
        run_checks(api, token, world, args.per_page)
        check_recorded(api, not args.no_schema)
    finally:
        mock.stop()
    failed = [r for r in RESULTS if not r[1]]
    print(f"\n{len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed", flush=True)
    if failed:
        print(f"{len(failed)} failed:", file=sys.stderr)
        for name, _, message in failed:
            print(f"  - {name}: {message}", file=sys.stderr)
        tail = mock.stderr_tail()
        if tail:
            print(f"mock stderr (tail):\n{tail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
