#!/usr/bin/env python3
"""Notification sinks of the local stack, on 127.0.0.1.

  sinks.py SMTP_PORT WEBHOOK_PORT DIR

An SMTP server (aiosmtpd) and an HTTP webhook receiver (a stand-in for a Slack incoming
webhook) that append every message they receive, as one JSON line, to DIR/mail.jsonl and
DIR/webhooks.jsonl, for the demo and the tests to read. A webhook path containing
"/fail" answers HTTP 500, to exercise the sender's retries.
"""
import http.server
import json
import sys
import threading
import time

from aiosmtpd.controller import Controller


def append(path, record):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


class MailSink:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        append(self.path, {
            "at": time.time(),
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        })
        return "250 OK"


def webhook_handler(path):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("utf-8", "replace")
            if "/fail" in self.path:
                self.send_response(500)
                self.end_headers()
                return
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body
            append(path, {"at": time.time(), "path": self.path, "body": parsed})
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"webhook sink")

        def log_message(self, *args):
            pass

    return Handler


def main():
    smtp_port, webhook_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    controller = Controller(MailSink(f"{out}/mail.jsonl"), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", webhook_port), webhook_handler(f"{out}/webhooks.jsonl"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        threading.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
