/* floor.c: the kernel's own cost, with no Python in the way.
 *
 * The same ping-pong and one-way stream the ipc experiment times in Python,
 * written in C over a pipe pair, a Unix stream socket pair and loopback TCP
 * (TCP_NODELAY). One process forks a peer that echoes; the parent times each
 * round trip with clock_gettime(CLOCK_MONOTONIC) and prints one line of JSON.
 *
 *   floor TRANSPORT SIZE SECONDS MAX_SAMPLES [CPU CPU]     TRANSPORT: pipe, unix, tcp
 *
 * With two CPU numbers the parent runs on the first and the peer on the second
 * (sched_setaffinity): the same CPU twice, or two, decides the floor (a write
 * on one core runs the reader at once; across cores the other core may first
 * have to wake from idle).
 *
 * Built by floor.py with the system's cc on first use (cc -O2), cached by the
 * hash of this file. The stream has no acknowledgements: the kernel's buffers
 * are the flow control, as they are for the Python version of these three.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <sched.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    exit(1);
}

/* Read or write exactly n bytes: a pipe or stream socket may move fewer per call. */
static int full(int fd, char *buf, size_t n, int writing) {
    size_t done = 0;
    while (done < n) {
        ssize_t got = writing ? write(fd, buf + done, n - done) : read(fd, buf + done, n - done);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        done += (size_t)got;
    }
    return 0;
}

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
}

static int cmp(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The peer: echo SIZE-byte messages until a zero-length "message" (EOF); for the
 * stream, count bytes until EOF and answer with one byte. */
static void echo(int in, int out, char *buf, size_t size) {
    for (;;) {
        ssize_t first = read(in, buf, 1);
        if (first <= 0) break;
        if (buf[0] == 'S') { /* a stream follows: drain until EOF on the next write end */
            for (;;) {
                ssize_t got = read(in, buf, size);
                if (got <= 0) break;
                if (buf[got - 1] == 'E') break; /* the stream's last message ends in E */
            }
            if (full(out, "k", 1, 1) < 0) break;
            continue;
        }
        if (full(in, buf + 1, size - 1, 0) < 0) break;
        if (full(out, buf, size, 1) < 0) break;
    }
    _exit(0);
}

static void tcp_pair(int *a, int *b) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof addr;
    int one = 1, listener = socket(AF_INET, SOCK_STREAM, 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 1) < 0 || getsockname(listener, (struct sockaddr *)&addr, &len) < 0)
        die("listen");
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*a, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    *b = accept(listener, NULL, NULL);
    if (*b < 0) die("accept");
    close(listener);
    setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: floor pipe|unix|tcp SIZE SECONDS MAX_SAMPLES [CPU CPU]\n");
        return 2;
    }
    int parent_cpu = argc == 7 ? atoi(argv[5]) : -1, peer_cpu = argc == 7 ? atoi(argv[6]) : -1;
    pin(parent_cpu);
    const char *transport = argv[1];
    size_t size = strtoul(argv[2], NULL, 10);
    double seconds = atof(argv[3]);
    long max_samples = atol(argv[4]);
    int to_peer[2], from_peer[2]; /* [0] is read by one side, [1] written by the other */
    if (strcmp(transport, "pipe") == 0) {
        if (pipe(to_peer) < 0 || pipe(from_peer) < 0) die("pipe");
    } else if (strcmp(transport, "unix") == 0) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) die("socketpair");
        to_peer[1] = from_peer[0] = sv[0];
        to_peer[0] = from_peer[1] = sv[1];
    } else if (strcmp(transport, "tcp") == 0) {
        int a, b;
        tcp_pair(&a, &b);
        to_peer[1] = from_peer[0] = a;
        to_peer[0] = from_peer[1] = b;
    } else {
        fprintf(stderr, "unknown transport %s\n", transport);
        return 2;
    }
    char *buf = malloc(size), *back = malloc(size);
    int64_t *rtt = malloc(sizeof(int64_t) * (size_t)max_samples);
    if (!buf || !back || !rtt || size < 2) die("malloc");
    memset(buf, 'x', size);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a parent killed mid-run takes its peer along */
        pin(peer_cpu);
        /* the parent's ends go, or the peer would never see EOF: it would hold a writer */
        close(to_peer[1]);
        if (from_peer[0] != to_peer[1]) close(from_peer[0]);
        echo(to_peer[0], from_peer[1], back, size);
    }
    close(to_peer[0]); /* the peer's ends: the parent must not hold them either */
    if (from_peer[1] != to_peer[0]) close(from_peer[1]);
    /* warm-up, then round trips for SECONDS or MAX_SAMPLES, whichever ends first */
    long samples = 0, warmup = 20;
    int64_t deadline = 0;
    for (long i = 0; samples < max_samples; i++) {
        buf[0] = 'P';
        int64_t t0 = now_ns();
        if (full(to_peer[1], buf, size, 1) < 0 || full(from_peer[0], back, size, 0) < 0)
            die("round trip");
        int64_t t1 = now_ns();
        if (i == warmup) deadline = t1 + (int64_t)(seconds * 1e9);
        if (i >= warmup) {
            rtt[samples++] = t1 - t0;
            if (t1 > deadline) break;
        }
    }
    qsort(rtt, (size_t)samples, sizeof rtt[0], cmp);
    /* the stream: SIZE-byte writes for SECONDS, the last one marked, then one byte back */
    buf[0] = 'S';
    if (full(to_peer[1], buf, 1, 1) < 0) die("stream start");
    long messages = 0;
    int64_t start = now_ns(), stop = start + (int64_t)(seconds * 1e9);
    buf[size - 1] = 'x';
    while (now_ns() < stop) {
        if (full(to_peer[1], buf, size, 1) < 0) die("stream");
        messages++;
    }
    buf[size - 1] = 'E';
    if (full(to_peer[1], buf, size, 1) < 0 || full(from_peer[0], back, 1, 0) < 0) die("stream end");
    messages++;
    double elapsed = (now_ns() - start) / 1e9;
    close(to_peer[1]);
    if (from_peer[0] != to_peer[1]) close(from_peer[0]);
    waitpid(pid, NULL, 0);
    printf("{\"samples\": %ld, \"rtt_median_us\": %.3f, \"rtt_p99_us\": %.3f, "
           "\"msgs_per_s\": %.1f, \"mb_per_s\": %.1f}\n",
           samples, rtt[samples / 2] / 1e3, rtt[(long)((samples - 1) * 0.99)] / 1e3,
           messages / elapsed, messages * (double)size / elapsed / 1e6);
    return 0;
}
