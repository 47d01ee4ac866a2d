/* floor.c: the kernel's own cost, with no Python in the way, doing what the Python side does.
 *
 * The same ping-pong and one-way stream the ipc experiment times in Python,
 * written in C over a pipe pair, a Unix stream socket pair and loopback TCP
 * (TCP_NODELAY). One process forks a peer; the parent times each round trip
 * with clock_gettime(CLOCK_MONOTONIC) and prints one line of JSON.
 *
 *   floor TRANSPORT SIZE SECONDS MAX_SAMPLES [CPU CPU]     TRANSPORT: pipe, unix, tcp
 *
 * The same work per message as wire.py and measure.py, so that the difference
 * is Python's and not a lighter job:
 *   - a message is wire.py's: a 16-byte header (kind, ack_every, the payload's
 *     crc32, a sequence number) and SIZE - 16 random bytes, built for each send
 *     with one copy of the payload (Messages.make), sent behind a 4-byte length
 *     in one writev (kernel.py's FdEndpoint);
 *   - the peer checks every message's crc32 with zlib's crc32 (the very
 *     function Python's zlib.crc32 calls) and, in the stream, its sequence
 *     number; PING comes back as it came, DATA is counted and acknowledged
 *     every half window (measure.window: at most 4 MiB or 64 messages in flight);
 *   - the parent compares each echo with what it sent, byte for byte.
 *
 * With two CPU numbers the parent runs on the first and the peer on the second
 * (sched_setaffinity): the same CPU twice, or two, decides the floor (a write
 * on one core runs the reader at once; across cores the other core may first
 * have to wake from idle).
 *
 * FLOOR_DAMAGE=N in the environment flips a payload byte of round trip N after its
 * checksum was taken, as a transport that damages data would: the peer must refuse
 * it and the run fail (tests/test_ipc_floor.py), as the Python peer does.
 *
 * Built by floor.py with the system's cc on first use (cc -O2 ... -lz), cached by
 * the hash of this file.
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
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* wire.py's HEADER, "<BxHIQ": kind, pad, ack_every, crc32(payload), seq */
enum { PING = 1, DATA = 2, END = 3, STATS = 4, ACK = 5 };
#define HEADER 16
#define WINDOW_BYTES (4 << 20)
#define WINDOW_MAX 64

static void put_header(unsigned char *m, int kind, unsigned ack_every, uint32_t crc, uint64_t seq) {
    m[0] = (unsigned char)kind;
    m[1] = 0;
    memcpy(m + 2, &(uint16_t){(uint16_t)ack_every}, 2); /* little-endian on x86 and arm64 */
    memcpy(m + 4, &crc, 4);
    memcpy(m + 8, &seq, 8);
}

static uint64_t seq_of(const unsigned char *m) {
    uint64_t seq;
    memcpy(&seq, m + 8, 8);
    return seq;
}

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

/* One length-prefixed message: the 4-byte length and the message in one writev. */
static int send_msg(int fd, unsigned char *m, uint32_t n) {
    struct iovec iov[2] = {{&n, 4}, {m, n}};
    ssize_t done = writev(fd, iov, 2);
    if (done < 0) return -1;
    if ((size_t)done < 4 + (size_t)n) { /* a short write: the rest, as FdEndpoint.send */
        size_t off = (size_t)done;
        if (off < 4) {
            if (full(fd, (char *)&n + off, 4 - off, 1) < 0) return -1;
            off = 4;
        }
        return full(fd, (char *)m + (off - 4), n - (off - 4), 1);
    }
    return 0;
}

/* One length-prefixed message into m (room for `room` bytes); its length, or -1. */
static long recv_msg(int fd, unsigned char *m, size_t room) {
    uint32_t n;
    if (full(fd, (char *)&n, 4, 0) < 0 || n > room || n < HEADER) return -1;
    return full(fd, (char *)m, n, 0) < 0 ? -1 : (long)n;
}

/* The peer: wire.Receiver in C. Every message's crc32 checked; PING echoed; DATA in
 * order, counted, acknowledged every ack_every; END answered with the count. */
static void peer(int in, int out, unsigned char *m, size_t size) {
    uint64_t expected = 0, counted = 0;
    unsigned char control[HEADER];
    for (;;) {
        long n = recv_msg(in, m, size);
        if (n < 0) break; /* EOF: the parent is done (QUIT) */
        uint32_t crc;
        memcpy(&crc, m + 4, 4);
        if (crc32(0L, m + HEADER, (uInt)(n - HEADER)) != crc) {
            fprintf(stderr, "message %llu failed its checksum\n", (unsigned long long)seq_of(m));
            _exit(3);
        }
        if (m[0] == PING) {
            if (send_msg(out, m, (uint32_t)n) < 0) break;
        } else if (m[0] == DATA) {
            if (seq_of(m) != expected) {
                fprintf(stderr, "message %llu arrived where %llu was due\n",
                        (unsigned long long)seq_of(m), (unsigned long long)expected);
                _exit(3);
            }
            expected++;
            counted++;
            uint16_t ack_every;
            memcpy(&ack_every, m + 2, 2);
            if (ack_every && counted % ack_every == 0) {
                put_header(control, ACK, 0, 0, counted);
                if (send_msg(out, control, HEADER) < 0) break;
            }
        } else if (m[0] == END) {
            put_header(control, STATS, 0, 0, counted);
            expected = counted = 0;
            if (send_msg(out, control, HEADER) < 0) break;
        }
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
    if (size < HEADER) {
        fprintf(stderr, "SIZE must be at least %d (the header)\n", HEADER);
        return 2;
    }
    /* the payload: random bytes once (Messages.payload), its crc32 once (Messages.crc) */
    unsigned char *payload = malloc(size - HEADER + 1), *msg = malloc(size), *back = malloc(size);
    int64_t *rtt = malloc(sizeof(int64_t) * (size_t)max_samples);
    if (!payload || !msg || !back || !rtt) die("malloc");
    srandom((unsigned)now_ns());
    for (size_t i = 0; i < size - HEADER; i++) payload[i] = (unsigned char)random();
    uint32_t crc = (uint32_t)crc32(0L, payload, (uInt)(size - HEADER));
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a parent killed mid-run takes its peer along */
        pin(peer_cpu);
        /* the parent's ends go, or the peer would never see EOF: it would hold a writer */
        close(to_peer[1]);
        if (from_peer[0] != to_peer[1]) close(from_peer[0]);
        peer(to_peer[0], from_peer[1], back, size);
    }
    close(to_peer[0]); /* the peer's ends: the parent must not hold them either */
    if (from_peer[1] != to_peer[0]) close(from_peer[1]);
    /* warm-up (measure.WARMUP), then round trips for SECONDS or MAX_SAMPLES */
    long samples = 0, warmup = 20;
    int64_t deadline = 0;
    const char *damage = getenv("FLOOR_DAMAGE");
    uint64_t damaged = damage ? strtoull(damage, NULL, 10) : UINT64_MAX;
    for (uint64_t seq = 0; samples < max_samples; seq++) {
        int64_t t0 = now_ns();
        put_header(msg, PING, 0, crc, seq); /* Messages.make: the header, one payload copy */
        memcpy(msg + HEADER, payload, size - HEADER);
        if (seq == damaged) msg[size - 1] ^= 1;
        if (send_msg(to_peer[1], msg, (uint32_t)size) < 0 ||
            recv_msg(from_peer[0], back, size) != (long)size)
            die("round trip");
        int64_t t1 = now_ns();
        if (memcmp(back, msg, size) != 0) { /* the echo, byte for byte */
            errno = EIO;
            die("the echo came back different");
        }
        if ((long)seq == warmup) deadline = t1 + (int64_t)(seconds * 1e9);
        if ((long)seq >= warmup) {
            rtt[samples++] = t1 - t0;
            if (t1 > deadline) break;
        }
    }
    qsort(rtt, (size_t)samples, sizeof rtt[0], cmp);
    /* the stream (measure.stream): DATA for SECONDS, a window in flight, then END */
    long allowed = (long)(WINDOW_BYTES / size);
    allowed = allowed > WINDOW_MAX ? WINDOW_MAX : allowed < 2 ? 2 : allowed;
    unsigned ack_every = allowed / 2 > 1 ? (unsigned)(allowed / 2) : 1;
    uint64_t sent = 0, acked = 0;
    int64_t start = now_ns(), stop = start + (int64_t)(seconds * 1e9);
    while (now_ns() < stop) {
        while ((long)(sent - acked) >= allowed) {
            if (recv_msg(from_peer[0], back, size) < 0 || back[0] != ACK) die("stream ack");
            acked = seq_of(back);
        }
        put_header(msg, DATA, ack_every, crc, sent);
        memcpy(msg + HEADER, payload, size - HEADER);
        if (send_msg(to_peer[1], msg, (uint32_t)size) < 0) die("stream");
        sent++;
    }
    put_header(msg, END, 0, crc, 0);
    if (send_msg(to_peer[1], msg, (uint32_t)size) < 0) die("stream end");
    for (;;) { /* the ACKs still on their way, then the peer's count */
        if (recv_msg(from_peer[0], back, size) < 0) die("stream stats");
        if (back[0] == STATS) break;
        acked = seq_of(back);
    }
    double elapsed = (now_ns() - start) / 1e9;
    if (seq_of(back) != sent) {
        errno = EIO;
        die("the peer counted another number of messages");
    }
    close(to_peer[1]);
    if (from_peer[0] != to_peer[1]) close(from_peer[0]);
    waitpid(pid, NULL, 0);
    printf("{\"samples\": %ld, \"rtt_median_us\": %.3f, \"rtt_p99_us\": %.3f, "
           "\"msgs_per_s\": %.1f, \"mb_per_s\": %.1f}\n",
           samples, rtt[samples / 2] / 1e3, rtt[(long)((samples - 1) * 0.99)] / 1e3,
           sent / elapsed, sent * (double)size / elapsed / 1e6);
    return 0;
}
