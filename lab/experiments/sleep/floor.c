/* floor.c: the SELECT SLEEP demo in C, the least a client can cost.
 *
 * The same job the Python strategies do (job.py): N connections made first,
 * each warmed up with SELECT 1, then one SELECT SLEEP on every connection,
 * all released at one instant, every reply read whole. Two ways, both in
 * MariaDB Connector/C (libmariadb):
 *
 *   epoll    one thread: the non-blocking API (mysql_real_query_start/_cont,
 *            mysql_store_result_start/_cont) driven by one epoll set, as one
 *            asyncio loop drives its tasks, with no Python in the way
 *   threads  one thread per connection, blocking calls: what mysqlslap does
 *
 *   floor MODE CLIENTS HOST PORT USER DATABASE     (password in $LAB_FLOOR_PASSWORD)
 *
 * The conversation with floor.py, one line each over stdin/stdout:
 *   stdin   the query, then "go" when the watcher has seen every client idle
 *   stdout  "connected CONNECT_NS" when all are connected, then after the
 *           release "go GO_NS" and one line per client, "START END SSTART SEND"
 *           (CLOCK_MONOTONIC ns, the same clock as Python's perf_counter_ns;
 *           the server's NOW(6) and SYSDATE(6) as the query returns them), or
 *           at any point "error KIND CODE TEXT" (KIND: fds, threads, refused,
 *           lost, other) and exit 1.
 *
 * Connects are made one after another (epoll) or one per thread as it is
 * created (threads): no burst, so the server's listen queue (back_log) never
 * overflows. Connecting is not the measured phase.
 *
 * Built by floor.py with the system's cc on first use (cc -O2, mariadb_config's
 * flags), cached by the hash of this file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <mysql.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>

enum state { QUERYING, STORING, DONE };

struct client {
    MYSQL *db;
    enum state state;
    int64_t start, end;
    double server_start, server_end;
    pthread_t thread;
    int failed;
    unsigned code;
    char text[256];
};

static struct client *clients;
static int n;
static const char *sql;
static const char *host, *user, *password, *database;
static unsigned port;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The words job.py uses for a failure: a limit (fds, threads, refused) is where a
 * --scale sweep broke; lost is the server gone mid-query. */
static const char *kind_of(unsigned code, int err, const char *text) {
    if (code == 1040 || code == 1135 || code == 1041) return "refused";  /* too many, no thread, OOM */
    if (err == EMFILE || err == ENFILE || strstr(text, "(24)")) return "fds";
    if (code == 2013 || code == 2006) return "lost";  /* lost connection, server gone away */
    return "other";
}

static void fail(const char *kind, unsigned code, const char *text) {
    printf("error %s %u %s\n", kind, code, text);
    fflush(stdout);
}

static int connect_blocking(MYSQL *db) {
    if (!mysql_real_connect(db, host, user, password, database, port, NULL, 0)) return -1;
    if (mysql_query(db, "SELECT 1") != 0) return -1;
    mysql_free_result(mysql_store_result(db));
    return 0;
}

/* Wait (poll) for what the non-blocking call asked for; the status to hand back. */
static int wait_for(MYSQL *db, int status) {
    struct pollfd p = {.fd = mysql_get_socket(db),
                       .events = (status & MYSQL_WAIT_READ ? POLLIN : 0) |
                                 (status & MYSQL_WAIT_WRITE ? POLLOUT : 0)};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {}
    return (p.revents & (POLLIN | POLLERR | POLLHUP) ? MYSQL_WAIT_READ : 0) |
           (p.revents & POLLOUT ? MYSQL_WAIT_WRITE : 0);
}

/* Connect and warm up through the non-blocking calls themselves, not their blocking
 * twins: each connection runs them on a stack of its own (a context the library
 * switches to), and its first use faults that stack's pages in. Measured: the
 * release's first queries took 420, 125, 37 us each when the warm-up was blocking. */
static int connect_nonblocking(MYSQL *db) {
    MYSQL *ok = NULL;
    int err = 0;
    MYSQL_RES *res = NULL;
    int status = mysql_real_connect_start(&ok, db, host, user, password, database, port, NULL, 0);
    while (status) status = mysql_real_connect_cont(&ok, db, wait_for(db, status));
    if (ok == NULL) return -1;
    status = mysql_real_query_start(&err, db, "SELECT 1", 8);
    while (status) status = mysql_real_query_cont(&err, db, wait_for(db, status));
    if (err) return -1;
    status = mysql_store_result_start(&res, db);
    while (status) status = mysql_store_result_cont(&res, db, wait_for(db, status));
    if (res == NULL) return -1;
    mysql_free_result(res);
    return 0;
}

/* One connection, warmed up: the first query's costs stay out of the phase. */
static MYSQL *connect_one(int nonblocking, unsigned *code, char *text) {
    MYSQL *db = mysql_init(NULL);
    unsigned timeout = 10;  /* job.CONNECT_TIMEOUT_S */
    my_bool no = 0;
    if (db == NULL) {
        *code = 0;
        snprintf(text, 256, "mysql_init: %s", strerror(ENOMEM));
        return NULL;
    }
    mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(db, MYSQL_OPT_SSL_ENFORCE, &no);  /* plain TCP, as the Python clients speak */
    if (nonblocking) mysql_options(db, MYSQL_OPT_NONBLOCK, 0);
    errno = 0;
    if (nonblocking ? connect_nonblocking(db) : connect_blocking(db)) {
        *code = mysql_errno(db);
        snprintf(text, 256, "%s", mysql_error(db));
        mysql_close(db);
        return NULL;
    }
    return db;
}

/* The row: NOW(6) x 1e6, SLEEP's 0, SYSDATE(6) x 1e6, as doubles in text. */
static int read_row(struct client *c, MYSQL_RES *res) {
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    if (row == NULL || row[0] == NULL || row[2] == NULL) return -1;
    c->server_start = strtod(row[0], NULL);
    c->server_end = strtod(row[2], NULL);
    mysql_free_result(res);
    return 0;
}

static void report(int64_t go) {
    printf("go %lld\n", (long long)go);
    for (int i = 0; i < n; i++)
        printf("%lld %lld %.1f %.1f\n", (long long)clients[i].start, (long long)clients[i].end,
               clients[i].server_start, clients[i].server_end);
    fflush(stdout);
}

/* Wait for floor.py's "go": it comes once the watcher has seen every client idle.
 * End of input (floor.py gone, or told to stop) is no go. */
static int wait_for_go(void) {
    char line[16];
    return fgets(line, sizeof line, stdin) != NULL && strncmp(line, "go", 2) == 0;
}

static int events_for(int status) {
    return (status & MYSQL_WAIT_READ ? EPOLLIN : 0) | (status & MYSQL_WAIT_WRITE ? EPOLLOUT : 0);
}

static int status_for(uint32_t events) {
    return (events & EPOLLIN ? MYSQL_WAIT_READ : 0) | (events & EPOLLOUT ? MYSQL_WAIT_WRITE : 0) |
           (events & (EPOLLERR | EPOLLHUP) ? MYSQL_WAIT_READ : 0);
}

/* One step of one client's query: the call the library wants next, until the
 * result is stored. Returns the status to wait for (0: done), or -1 on failure. */
static int step(struct client *c, int status) {
    int err = 0;
    MYSQL_RES *res = NULL;
    if (c->state == QUERYING) {
        status = status ? mysql_real_query_cont(&err, c->db, status)
                        : mysql_real_query_start(&err, c->db, sql, strlen(sql));
        if (status) return status;
        if (err) return -1;
        c->state = STORING;
        status = mysql_store_result_start(&res, c->db);
    } else {
        status = mysql_store_result_cont(&res, c->db, status);
    }
    if (status) return status;
    c->end = now_ns();
    c->state = DONE;
    return read_row(c, res);
}

static int run_epoll(void) {
    unsigned code = 0;
    char text[256] = "";
    int64_t began = now_ns();
    for (int i = 0; i < n; i++) {
        clients[i].db = connect_one(1, &code, text);
        if (clients[i].db == NULL) {
            fail(kind_of(code, errno, text), code, text);
            return 1;
        }
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        fail("fds", 0, strerror(errno));
        return 1;
    }
    printf("connected %lld\n", (long long)(now_ns() - began));
    fflush(stdout);
    if (!wait_for_go()) return 1;

    int64_t go = now_ns();
    int pending = n;
    for (int i = 0; i < n; i++) {  /* the release: every query written, one after another */
        struct client *c = &clients[i];
        c->start = now_ns();
        int status = step(c, 0);
        if (status < 0) goto failed_query;
        if (status == 0) { pending--; continue; }
        struct epoll_event ev = {.events = events_for(status), .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, mysql_get_socket(c->db), &ev);
    }
    struct epoll_event ready[256];
    while (pending > 0) {  /* every reply read whole */
        int got = epoll_wait(ep, ready, 256, -1);
        if (got < 0 && errno == EINTR) continue;
        for (int k = 0; k < got; k++) {
            struct client *c = &clients[ready[k].data.u32];
            int status = step(c, status_for(ready[k].events));
            if (status < 0) goto failed_query;
            if (status == 0) {
                pending--;
                epoll_ctl(ep, EPOLL_CTL_DEL, mysql_get_socket(c->db), NULL);
                continue;
            }
            struct epoll_event ev = {.events = events_for(status), .data.u32 = ready[k].data.u32};
            epoll_ctl(ep, EPOLL_CTL_MOD, mysql_get_socket(c->db), &ev);
        }
    }
    report(go);
    return 0;
failed_query:
    for (int i = 0; i < n; i++) {
        if (clients[i].state != DONE && mysql_errno(clients[i].db)) {
            code = mysql_errno(clients[i].db);
            fail(kind_of(code, 0, mysql_error(clients[i].db)), code, mysql_error(clients[i].db));
            return 1;
        }
    }
    fail("other", 0, "a query failed without an error");
    return 1;
}

/* threads: a barrier the parent opens once, as the Python threads' Event. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int settled, released, cancelled;

static void *one_client(void *arg) {
    struct client *c = arg;
    mysql_thread_init();
    c->db = connect_one(0, &c->code, c->text);
    pthread_mutex_lock(&lock);
    c->failed = c->db == NULL;
    settled++;
    pthread_cond_broadcast(&changed);
    while (!released && !cancelled) pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    if (c->db != NULL && !cancelled) {
        c->start = now_ns();
        if (mysql_real_query(c->db, sql, strlen(sql)) != 0 || read_row(c, mysql_store_result(c->db))) {
            c->failed = 1;
            c->code = mysql_errno(c->db);
            snprintf(c->text, sizeof c->text, "%s", mysql_error(c->db));
        }
        c->end = now_ns();
    }
    mysql_thread_end();
    return NULL;
}

static int run_threads(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* 256 KiB, not glibc's 8 MiB default: the client's stack is shallow, and 10,000
     * threads would otherwise reserve 80 GiB of address space. */
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int64_t began = now_ns();
    int made = 0, status = 0;
    for (; made < n; made++) {
        int err = pthread_create(&clients[made].thread, &attr, one_client, &clients[made]);
        if (err) {
            fail("threads", 0, strerror(err));
            status = 1;
            break;
        }
    }
    pthread_mutex_lock(&lock);
    while (settled < made) pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < made && status == 0; i++) {
        if (clients[i].failed) {
            fail(kind_of(clients[i].code, 0, clients[i].text), clients[i].code, clients[i].text);
            status = 1;
        }
    }
    if (status == 0) {
        printf("connected %lld\n", (long long)(now_ns() - began));
        fflush(stdout);
        status = !wait_for_go();
    }
    int64_t go = now_ns();
    pthread_mutex_lock(&lock);
    if (status) cancelled = 1; else released = 1;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < made; i++) pthread_join(clients[i].thread, NULL);
    for (int i = 0; i < made && status == 0; i++) {
        if (clients[i].failed) {
            fail(kind_of(clients[i].code, 0, clients[i].text), clients[i].code, clients[i].text);
            status = 1;
        }
    }
    if (status == 0) report(go);
    return status;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: floor epoll|threads CLIENTS HOST PORT USER DATABASE\n");
        return 2;
    }
    n = atoi(argv[2]);
    host = argv[3];
    port = (unsigned)atoi(argv[4]);
    user = argv[5];
    database = argv[6];
    password = getenv("LAB_FLOOR_PASSWORD");
    /* Ctrl-C reaches the whole foreground group: like the lab's children, the floor lets
     * its queries finish and takes its orders from floor.py, which closes our stdin. */
    signal(SIGINT, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGTERM);  /* the lab gone: no floor left holding connections */
    static char query[4096];
    if (n < 1 || fgets(query, sizeof query, stdin) == NULL) return 2;
    query[strcspn(query, "\n")] = 0;
    sql = query;
    clients = calloc((size_t)n, sizeof *clients);
    if (clients == NULL || mysql_library_init(0, NULL, NULL)) return 1;
    int status = strcmp(argv[1], "threads") == 0 ? run_threads() : run_epoll();
    for (int i = 0; i < n; i++)
        if (clients[i].db) mysql_close(clients[i].db);  /* COM_QUIT: a goodbye, not an abort */
    mysql_library_end();
    return status;
}
