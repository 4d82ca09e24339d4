#!/usr/bin/env python3
"""A webhook receiver for the enocean-agent tests, independent of the Rust code.

Listens on 127.0.0.1 (port chosen by the OS), prints "PORT <n>" and one JSON line per request on
stdout. Path /hmac: verifies the hex HMAC-SHA256 of the raw body in the `Signature` header with
hmac.compare_digest. Path /sw: verifies Standard Webhooks headers with the `standardwebhooks`
package. Answers 200 when the signature verifies, 401 otherwise.

Usage: receiver.py --hmac-secret SECRET --sw-secret whsec_...
"""

import argparse
import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError
except ImportError:  # reported to the test, which skips the Standard Webhooks part loudly
    Webhook = None


LOCK = threading.Lock()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hmac-secret", required=True)
    ap.add_argument("--sw-secret", required=True)
    args = ap.parse_args()
    sw = Webhook(args.sw_secret) if Webhook is not None else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            ok = False
            detail = ""
            if self.path == "/hmac":
                want = hmac.new(args.hmac_secret.encode(), body, hashlib.sha256).hexdigest()
                got = self.headers.get("Signature", "")
                ok = hmac.compare_digest(want, got)
            elif self.path == "/sw" and sw is not None:
                try:
                    sw.verify(body, dict(self.headers.items()))
                    ok = True
                except WebhookVerificationError as e:
                    detail = str(e)
            try:
                event = json.loads(body).get("event")
                msg_id = json.loads(body).get("id")
            except ValueError:
                event, msg_id = None, None
            line = {"path": self.path, "ok": ok, "event": event, "id": msg_id,
                    "webhook_id": self.headers.get("webhook-id"), "detail": detail}
            with LOCK:
                print(json.dumps(line), flush=True)
            status = 200 if ok else 401
            payload = b'{"ok":true}' if ok else b'{"ok":false}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("SW", "available" if sw is not None else "missing", flush=True)
    print("PORT", srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
