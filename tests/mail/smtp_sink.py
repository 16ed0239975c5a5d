"""A real SMTP server for the mail tests (aiosmtpd): each message that arrives is parsed with
Python's own email package and written as one JSON file into OUTDIR, so that the tests read what
a mail client would show.

usage: smtp_sink.py OUTDIR PORT [--tls CERT KEY USER PASSWORD]

With --tls the server requires STARTTLS before anything else and AUTH (USER, PASSWORD) before
MAIL. A recipient whose address starts with "refuse" is refused with 550. Prints "ready" once
listening.
"""
import json
import os
import ssl
import sys
import time
from email import policy
from email.parser import BytesParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

outdir, port = sys.argv[1], int(sys.argv[2])
tls = sys.argv[3:4] == ["--tls"]


class Sink:
    count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse"):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = BytesParser(policy=policy.default).parsebytes(envelope.content)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "content_type": msg.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
            "tls": session.ssl is not None,
            "login": session.auth_data.login.decode() if session.authenticated else None,
        }
        Sink.count += 1
        tmp = os.path.join(outdir, f".{Sink.count}.json")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(outdir, f"{Sink.count}.json"))
        return "250 Message accepted"


kwargs = {}
if tls:
    cert, key, user, password = sys.argv[4:8]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    kwargs = dict(
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )

controller = Controller(Sink(), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
