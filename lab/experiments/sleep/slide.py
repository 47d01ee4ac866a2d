"""The slide: two MySQL clients each run SELECT SLEEP(1), one after the other, then in two threads.

    python -m lab.experiments.sleep.slide      # about 2 s, then about 1 s

A thread blocked on its socket releases the GIL, so the two waits overlap.
The server: LAB_MYSQL_URL, or root with no password on 127.0.0.1:3306.

What goes wrong with it: the clock runs while the threads are started and
connect, so connecting is hidden in the figure; pymysql's default TLS mode
builds an SSL context on every connect, even to a server without TLS
(37.6 ms of CPU a connect against 0.4 with ssl_disabled, at load 3.7),
and under the GIL those run one at a time (1,000 clients: 38 s of it); the
threads send their queries whenever each happens to be ready; and nothing
asks the server whether the SLEEPs overlapped at all. threads.py fixes the
clock (everyone connects, then one release), lab/db.py the TLS (off unless
the URL asks for it), watcher.py the last (the server's own count of
SLEEPs at once).
"""

import os
import threading
import time
from urllib.parse import urlsplit

import pymysql

URL = urlsplit(os.environ.get("LAB_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"))


def sleep_one_second() -> None:
    conn = pymysql.connect(
        host=URL.hostname, port=URL.port or 3306, user=URL.username, password=URL.password or ""
    )
    with conn, conn.cursor() as cursor:  # closed on the way out: the server sees a goodbye
        cursor.execute("SELECT SLEEP(1)")


def main() -> None:
    began = time.perf_counter()
    sleep_one_second()
    sleep_one_second()
    print(f"without threads: {time.perf_counter() - began:.2f} s")

    began = time.perf_counter()
    threads = [threading.Thread(target=sleep_one_second) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"with two threads: {time.perf_counter() - began:.2f} s")


if __name__ == "__main__":
    main()
