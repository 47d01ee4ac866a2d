"""The slide: a preforking server. The master binds one socket; two forked workers accept on it.

    python -m lab.experiments.prefork.slide 8080     # then: curl localhost:8080, again

The kernel gives each connection to whichever worker is waiting in accept(),
so the answers come from two pids.

What goes wrong with it: kill the master and its workers live on as orphans,
still answering on the port; a worker that dies is never replaced; one stuck
in a request is never noticed; a deploy means stopping everything. master.py
fixes the master (it reaps, replaces, and answers TERM, HUP, USR2, TTIN and
TTOU, one handle_<signal> each), worker.py the worker (it notices a dead
master and finishes its request before it stops), scoreboard.py the
heartbeats that find a stuck one.
"""

import os
import socket
import sys


def serve(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the request; one read is enough for a curl's
            body = f"hello from pid {os.getpid()}\n".encode()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    listener = socket.create_server(("127.0.0.1", port), backlog=64)
    print(f"master {os.getpid()} on port {listener.getsockname()[1]}", flush=True)
    for _ in range(2):
        if os.fork() == 0:  # the worker: inherits the listening socket
            serve(listener)
    while True:
        pid, status = os.wait()  # the master only waits for its workers
        print(f"worker {pid} exited {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
