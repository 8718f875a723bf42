"""A local SMTP server that stores every message it accepts in a Maildir (for the demo and the tests).

Run: ``python -m alumon.smtp_sink --port 18025 --maildir RUN/mail``. Each message becomes one file under
``RUN/mail/new/``, readable with Python's ``mailbox.Maildir`` or any mail client. With ``--cert/--key`` it
speaks TLS (``--tls starttls``: STARTTLS required before any mail; ``--tls ssl``: TLS from the first byte),
and with ``--user`` it requires AUTH with the password from the environment variable ``--password-env``, as
a plant's mail relay does.
"""

from __future__ import annotations

import argparse
import os
import signal
import ssl
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


def _authenticator(user: str, password: str) -> Any:
    def check(_server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
        return AuthResult(success=ok)

    return check


def serve(host: str, port: int, maildir: Path, tls: str = "none", cert: Path | None = None,
          key: Path | None = None, user: str | None = None, password: str | None = None) -> None:
    maildir.parent.mkdir(parents=True, exist_ok=True)
    for sub in ("tmp", "new", "cur"):  # Maildir(create=True) skips these when the directory already exists
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {}
    if tls != "none":
        assert cert is not None and key is not None, "TLS needs --cert and --key"
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        options |= {"ssl_context": ctx} if tls == "ssl" else {"tls_context": ctx, "require_starttls": True}
    if user is not None:
        # With implicit TLS aiosmtpd does not know the socket is encrypted; only STARTTLS needs its check.
        options |= {"authenticator": _authenticator(user, password or ""), "auth_required": True,
                    "auth_require_tls": tls == "starttls"}
    controller = Controller(Mailbox(maildir), hostname=host, port=port, **options)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--tls", choices=("none", "starttls", "ssl"), default="none")
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--user")
    parser.add_argument("--password-env", help="environment variable holding the password --user must give")
    args = parser.parse_args()
    password = os.environ.get(args.password_env, "") if args.password_env else None
    serve(args.host, args.port, args.maildir, args.tls, args.cert, args.key, args.user, password)


if __name__ == "__main__":
    main()
