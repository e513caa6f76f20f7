/* Tiny helper for scripts/bench (start/stop overhead, how cost grows with work).
 *
 *   bench-child stamp FILE PROG ARGS...   write CLOCK_REALTIME (ns) to FILE, then execvp PROG
 *   bench-child spew BYTES [PORT]         write BYTES of numbered 100-byte text lines to stdout
 *                                         in 256 KiB write() calls, the last line "SPEW-END",
 *                                         then wait for a signal; with PORT, a forked child
 *                                         answers HTTP on 127.0.0.1:PORT as serve does (so a
 *                                         supervisor's readiness passes and its probing stops)
 *   bench-child leak N DIR [PORT]         double-fork N processes that sleep until killed
 *                                         (orphans: a subreaper adopts them), then serve DIR [PORT]
 *   bench-child serve DIR [PORT]          write DIR/start (CLOCK_REALTIME ns, first thing);
 *                                         with PORT, answer every HTTP request on 127.0.0.1:PORT
 *                                         with 200 text/html (one write, Connection: close);
 *                                         on SIGTERM write DIR/term (when the signal arrived)
 *                                         and DIR/exit (just before _exit(0)).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void put(const char *dir, const char *name, long long v) {
    char path[4096], buf[32];
    if (dir) snprintf(path, sizeof path, "%s/%s", dir, name);
    else snprintf(path, sizeof path, "%s", name);
    /* Written under another name and renamed: a reader polling for the
       file never sees it empty. */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { perror(tmp); _exit(111); }
    int n = snprintf(buf, sizeof buf, "%lld\n", v);
    if (write(fd, buf, n) != n) _exit(111);
    close(fd);
    if (rename(tmp, path) != 0) { perror(path); _exit(111); }
}

static volatile sig_atomic_t got_term;
static volatile long long term_ns;

static void on_term(int sig) {
    (void)sig;
    if (!got_term) term_ns = now_ns();
    got_term = 1;
}

static const char resp[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n"
    "Connection: close\r\n\r\n<html></html>";

static int listen_on(const char *port) {
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 64) < 0) {
        perror("bind/listen");
        _exit(111);
    }
    return lfd;
}

static void answer(int lfd) {
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0) {
        char buf[4096];
        (void)read(c, buf, sizeof buf);
        (void)write(c, resp, sizeof resp - 1);
        close(c);
    }
}

static int spew(int argc, char **argv) {
    long long total = atoll(argv[2]);
    if (argc >= 4) {
        int lfd = listen_on(argv[3]);
        if (fork() == 0) {
            /* The HTTP side: no output, dies with the group's SIGTERM. */
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            for (;;) answer(lfd);
        }
        close(lfd);
    }
    enum { LINE = 100, LINES = 2621 };
    static char buf[LINE * LINES];
    long long written = 0, n = 0;
    while (written < total) {
        size_t len = 0;
        for (int i = 0; i < LINES && written + (long long)len < total; i++, n++) {
            int k = snprintf(buf + len, LINE + 1, "%012lld ", n);
            memset(buf + len + k, 'x', LINE - 1 - k);
            buf[len + LINE - 1] = '\n';
            len += LINE;
        }
        if (written + (long long)len >= total) {
            memcpy(buf + len - LINE, "SPEW-END", 8);
            memset(buf + len - LINE + 8, ' ', LINE - 9);
        }
        for (size_t off = 0; off < len;) {
            ssize_t w = write(1, buf + off, len - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { perror("write"); return 111; }
            off += (size_t)w;
        }
        written += (long long)len;
    }
    for (;;) pause(); /* until the bench reads our CPU time and stops us */
}

static void leak(int n) {
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0) { perror("fork"); _exit(111); }
        if (p == 0) {
            if (fork() == 0) {
                int null = open("/dev/null", O_RDWR);
                for (int fd = 0; fd < 3; fd++) dup2(null, fd);
                signal(SIGTERM, SIG_DFL);
                for (;;) pause();
            }
            _exit(0);
        }
        while (waitpid(p, NULL, 0) < 0 && errno == EINTR) {}
    }
}

int main(int argc, char **argv) {
    long long start = now_ns();
    if (argc >= 3 && strcmp(argv[1], "spew") == 0) return spew(argc, argv);
    if (argc >= 4 && strcmp(argv[1], "leak") == 0) {
        leak(atoi(argv[2]));
        argv += 1;
        argc -= 1;
        argv[1] = "serve"; /* now serve DIR [PORT] */
    }
    if (argc >= 4 && strcmp(argv[1], "stamp") == 0) {
        put(NULL, argv[2], now_ns());
        execvp(argv[3], argv + 3);
        perror(argv[3]);
        return 127;
    }
    if (argc < 3 || strcmp(argv[1], "serve") != 0) {
        fprintf(stderr, "usage: bench-child stamp FILE PROG ARGS... | serve DIR [PORT] | spew BYTES [PORT]"
                        " | leak N DIR [PORT]\n");
        return 2;
    }
    const char *dir = argv[2];
    put(dir, "start", start);

    sigset_t block, orig;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &orig);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);

    int lfd = -1;
    if (argc >= 4) {
        lfd = listen_on(argv[3]);
        put(dir, "listening", now_ns());
    }
    while (!got_term) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        int n = ppoll(&p, lfd >= 0 ? 1 : 0, NULL, &orig); /* SIGTERM only delivered in here */
        if (n > 0 && (p.revents & POLLIN)) answer(lfd);
    }
    put(dir, "term", term_ns);
    put(dir, "exit", now_ns());
    _exit(0);
}
