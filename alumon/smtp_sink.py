"""A local SMTP server that stores every message it accepts in a Maildir (for the demo and the tests).

Run: ``python -m alumon.smtp_sink --port 18025 --maildir RUN/mail``. Each message becomes one file under
``RUN/mail/new/``, readable with Python's ``mailbox.Maildir`` or any mail client.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


def serve(host: str, port: int, maildir: Path) -> None:
    maildir.parent.mkdir(parents=True, exist_ok=True)
    for sub in ("tmp", "new", "cur"):  # Maildir(create=True) skips these when the directory already exists
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    controller = Controller(Mailbox(maildir), hostname=host, port=port)
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
    args = parser.parse_args()
    serve(args.host, args.port, args.maildir)


if __name__ == "__main__":
    main()
