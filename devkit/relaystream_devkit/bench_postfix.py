"""A throwaway local Postfix for `relaystream bench --compare postfix`: a relay to the sink.

Its configuration, queue and log live under the bench's state directory (nothing in
/etc/postfix changes): it listens on a loopback port of its own, relays everything from
127.0.0.0/8 to `[127.0.0.1]:SINKPORT` without DNS or TLS, and logs to a file so the bench can
read each recipient's reception-to-delivery `delay=`.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

POSTFIX_PACKAGE = "postfix"
# The user Postfix's daemons (and its master, for its lock file) run as: main.cf's mail_owner.
MAIL_OWNER = "postfix"
_MASTER_CF_DIST = Path("/usr/share/postfix/master.cf.dist")
_SENT = re.compile(r"to=<([^>]*)>.*?\bdelay=([\d.]+).*\bstatus=sent\b")


def postfix_tool_path(program: str) -> str | None:
    # Debian installs Postfix's tools in /usr/sbin, which a user's PATH may lack.
    return shutil.which(program, path=f"{os.environ.get('PATH', '')}:/usr/sbin")


def postfix_problem() -> str | None:
    """Why a local Postfix cannot run here, with the fix; None when it can."""
    if postfix_tool_path("postfix") is None or not _MASTER_CF_DIST.is_file():
        return (
            "Postfix is not installed: run the bench with --install-postfix (as root), or "
            "`DEBIAN_FRONTEND=noninteractive apt-get install -y postfix` yourself"
        )
    if os.geteuid() != 0:
        return "Postfix's master must start as root (it drops to the postfix user): run as root"
    return None


@dataclass(frozen=True)
class DirectoryAccess:
    """What decides whether a user may enter a directory: its mode bits and owners."""

    path: Path
    mode: int
    uid: int
    gid: int


def first_unsearchable(
    directories: Iterable[DirectoryAccess], uid: int, gids: Collection[int]
) -> DirectoryAccess | None:
    """The first of `directories` (from / down) that user `uid` with groups `gids` may not
    enter, judged as the kernel judges mode bits: the owner's bit for the owner, else the
    group's for a member, else the others'; root enters anything. None when every one is
    searchable. (ACLs are not read: a directory opened to Postfix by an ACL alone is judged
    closed, and the bench says so rather than fail later.)"""
    if uid == 0:
        return None
    for directory in directories:
        if directory.uid == uid:
            allowed = directory.mode & stat.S_IXUSR
        elif directory.gid in gids:
            allowed = directory.mode & stat.S_IXGRP
        else:
            allowed = directory.mode & stat.S_IXOTH
        if not allowed:
            return directory
    return None


def path_access(path: Path) -> list[DirectoryAccess]:
    """Each directory from / down to `path` (which must exist), with its mode and owners."""
    resolved = path.resolve()
    result = []
    for directory in [*reversed(resolved.parents), resolved]:
        status = directory.stat()
        result.append(DirectoryAccess(directory, status.st_mode, status.st_uid, status.st_gid))
    return result


def mail_owner_ids() -> tuple[int, set[int]] | None:
    """The mail owner's uid and groups; None when there is no such user (Postfix missing)."""
    try:
        user = pwd.getpwnam(MAIL_OWNER)
    except KeyError:
        return None
    groups = {group.gr_gid for group in grp.getgrall() if MAIL_OWNER in group.gr_mem}
    return user.pw_uid, groups | {user.pw_gid}


def unreachable_problem(directory: Path, uid: int, gids: Collection[int]) -> str | None:
    """Why Postfix, running as `uid`, cannot use `directory` for its queue and lock file
    (the fix included); None when it can."""
    blocked = first_unsearchable(path_access(directory), uid, gids)
    if blocked is None:
        return None
    return (
        f"Postfix cannot use {directory}: its daemons run as user {MAIL_OWNER!r}, which may "
        f"not enter {blocked.path} (mode {stat.S_IMODE(blocked.mode):04o}, owner uid "
        f"{blocked.uid}), so its master cannot open its lock file there. Choose a --state-dir "
        f"that user can reach (for instance under /var/tmp), or let it pass with "
        f"`chmod o+x {blocked.path}` if that folder may be entered by others (the bench does "
        "not loosen a folder's permissions itself)"
    )


def postfix_directory_problem(directory: Path) -> str | None:
    """`unreachable_problem` for the installed Postfix's mail owner; None without one."""
    owner = mail_owner_ids()
    if owner is None:
        return None  # not installed: postfix_problem says so
    return unreachable_problem(directory, *owner)


def install_postfix() -> str | None:
    """apt-get install postfix without its configuration dialog; the error text or None."""
    if os.geteuid() != 0:
        return "installing Postfix needs root"
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["debconf-set-selections"],
        input="postfix postfix/main_mailer_type select No configuration\n",
        text=True,
        check=False,
    )
    completed = subprocess.run(
        ["apt-get", "install", "-y", POSTFIX_PACKAGE],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        return f"apt-get install {POSTFIX_PACKAGE} failed:\n{completed.stderr[-2000:]}"
    return None


def render_main_cf(directory: Path, relay_port: int) -> str:
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": str(directory / "spool"),
        "data_directory": str(directory / "data"),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "myhostname": "postfix.bench.test",
        "mydomain": "bench.test",
        # Nothing is local: every recipient is relayed to the sink.
        "mydestination": "",
        "relay_domains": "",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "relayhost": f"[127.0.0.1]:{relay_port}",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "smtp_dns_support_level": "disabled",
        "smtpd_peername_lookup": "no",
        "smtp_tls_security_level": "none",
        "smtpd_tls_security_level": "none",
        "biff": "no",
        "maillog_file": str(directory / "maillog"),
        "maillog_file_prefixes": str(directory),
    }
    return "".join(f"{key} = {value}\n" for key, value in settings.items())


def render_master_cf(dist: str, smtp_port: int) -> str:
    """Debian's master.cf with no chroot (the queue is not under /var/spool/postfix) and the
    SMTP listener on a loopback port of ours instead of 25."""
    lines = []
    for line in dist.splitlines():
        fields = line.split()
        if line[:1] in ("", "#", " ", "\t") or len(fields) < 8:
            lines.append(line)
            continue
        if fields[0] == "smtp" and fields[1] == "inet":
            fields[0] = f"127.0.0.1:{smtp_port}"
        fields[4] = "n"
        lines.append("  ".join(fields[:8]) + ("  " + " ".join(fields[8:]) if fields[8:] else ""))
    return "\n".join(lines) + "\n"


class LocalPostfix:
    """One Postfix instance configured in `directory`; `start()`, `stop()`, `master_pid`."""

    def __init__(self, directory: Path, smtp_port: int, relay_port: int) -> None:
        self.directory = directory.resolve()
        self.smtp_port = smtp_port
        self.relay_port = relay_port
        self.config_dir = self.directory / "etc"

    def _postfix(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        program = postfix_tool_path("postfix") or "postfix"
        return subprocess.run(
            [program, "-c", str(self.config_dir), *arguments],
            capture_output=True,
            text=True,
            check=False,
        )

    def configure(self) -> None:
        for sub in ("etc", "spool", "data"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        # postfix-script wants a root-owned queue directory no one else can write to.
        os.chmod(self.directory, 0o755)
        os.chmod(self.directory / "spool", 0o755)
        # The master writes its lock and caches here as the mail owner.
        shutil.chown(self.directory / "data", user=MAIL_OWNER)
        (self.config_dir / "main.cf").write_text(render_main_cf(self.directory, self.relay_port))
        master = render_master_cf(_MASTER_CF_DIST.read_text(), self.smtp_port)
        (self.config_dir / "master.cf").write_text(master)

    def start(self, timeout_s: float = 30.0) -> None:
        self.configure()
        checked = self._postfix("check")
        if checked.returncode != 0:
            raise RuntimeError(f"postfix check failed: {checked.stderr.strip()}")
        started = self._postfix("start")
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed:\n{self._log_tail()}")
        deadline = time.monotonic() + timeout_s
        while self.master_pid is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postfix did not start:\n{self._log_tail()}")
            time.sleep(0.1)

    def _log_tail(self, lines: int = 10) -> str:
        try:
            text = (self.directory / "maillog").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    @property
    def master_pid(self) -> int | None:
        try:
            pid = int((self.directory / "spool" / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def stop(self) -> None:
        self._postfix("stop")
        deadline = time.monotonic() + 15
        while self.master_pid is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.master_pid is not None:
            self._postfix("abort")

    def delivery_delays_ms(self, recipient_tag: str) -> list[float]:
        """Postfix's reception-to-delivery `delay=` (seconds, 10 ms resolution) of each sent
        recipient of one run, in ms, ascending."""
        try:
            text = (self.directory / "maillog").read_text(errors="replace")
        except OSError:
            return []
        return sorted(
            float(found.group(2)) * 1000.0
            for found in _SENT.finditer(text)
            if recipient_tag in found.group(1)
        )
