"""A test service for the services e2e: headers echo, SSE, streamed echo, a slow answer, a WebSocket echo."""
import base64, hashlib, json, struct, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("request %s\n" % (fmt % args))
        sys.stderr.flush()

    def answer(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/headers"):
            return self.answer(200, json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}))
        if self.path == "/events":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.end_headers()
            for i in range(3):
                self.wfile.write(("event: tick\ndata: %d\n\n" % i).encode())
                self.wfile.flush()
                time.sleep(0.2)
            self.close_connection = True
            return
        if self.path == "/slow":
            time.sleep(10)
            return self.answer(200, "late", "text/plain")
        if self.path == "/ws" and self.headers.get("upgrade", "").lower() == "websocket":
            return self.websocket()
        return self.answer(200, "hello from the service\n", "text/plain")

    def do_POST(self):
        # Streamed both ways: the body is read and written back in chunks.
        length = int(self.headers.get("content-length", "0"))
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(length))
        self.end_headers()
        left = length
        while left > 0:
            chunk = self.rfile.read(min(65536, left))
            if not chunk:
                break
            self.wfile.write(chunk)
            left -= len(chunk)

    def websocket(self):
        accept = base64.b64encode(hashlib.sha1((self.headers["sec-websocket-key"] + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "Upgrade")
        self.send_header("sec-websocket-accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack(">H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                return
            reply = b"echo:" + payload
            self.wfile.write(bytes([0x81, len(reply)]) + reply if len(reply) < 126 else bytes([0x81, 126]) + struct.pack(">H", len(reply)) + reply)
            self.wfile.flush()


print("listening on", sys.argv[1], flush=True)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
