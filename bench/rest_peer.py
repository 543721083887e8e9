"""The REST peer of the benchmark: Cyborg's GET /accelerators/{uuid}, from the same SQLite file.

    python3 rest_peer.py DB      # prints the port it listens on, then serves until killed

Python's standard library only (http.server, sqlite3), HTTP/1.1 keep-alive, Nagle off: the
alternative users have today, at its fastest.
"""
import http.server
import json
import socket
import sqlite3
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.db = sqlite3.connect("file:%s?mode=ro" % self.server.db_path, uri=True)

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        row = None
        if len(parts) == 2 and parts[0] == "accelerators":
            row = self.db.execute("SELECT uuid, name, spec, state, attachment, device_type, vendor_id, product_id "
                                  "FROM accelerators WHERE uuid = ?", (parts[1],)).fetchone()
        if row is None:
            body, code = b'{"error": "not found"}', 404
        else:
            keys = ["uuid", "name", "acc_specs", "state", "attachment", "device_type", "vendor_id", "product_id"]
            value = dict(zip(keys, row))
            value["acc_specs"] = json.loads(value["acc_specs"])
            body, code = json.dumps(value).encode(), 200
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.db_path = sys.argv[1]
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
