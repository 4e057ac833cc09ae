"""A camera's still-image endpoint that needs HTTP Digest auth (RFC 7616, MD5, qop=auth),
like Hikvision's ISAPI picture URL. Serves one JPEG file.

usage: digest_snapshot_server.py <port> <user> <password> <image.jpg>
Prints "serving" when ready and one line per request: "GET <path> <status>".
"""
import hashlib
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, USER, PASSWORD, IMAGE = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
REALM = "IP Camera"
NONCE = os.urandom(16).hex()


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.authorized():
            body = open(IMAGE, "rb").read()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            print(f"GET {self.path} 200", flush=True)
        else:
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Digest realm="{REALM}", qop="auth", nonce="{NONCE}", algorithm=MD5',
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
            print(f"GET {self.path} 401", flush=True)

    def authorized(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Digest "):
            return False
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header[7:]))
        if fields.get("username") != USER or fields.get("nonce") != NONCE:
            return False
        ha1 = md5(f"{USER}:{REALM}:{PASSWORD}")
        ha2 = md5(f"GET:{fields.get('uri', '')}")
        expected = md5(
            f"{ha1}:{NONCE}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:auth:{ha2}"
        )
        return fields.get("uri") == self.path and fields.get("response") == expected

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("serving", flush=True)
server.serve_forever()
