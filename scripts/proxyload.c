/*
 * proxyload.c - connection-rate load for jamd, with or without a PROXY
 * protocol v2 header on every connection (HAProxy's proxy-protocol.txt),
 * so that both sides of the comparison are measured by the same tool in the
 * same way.
 *
 * Build:  gcc -O2 -o proxyload scripts/proxyload.c
 * Usage:  proxyload [-h HOST] [-p PORT] [-n CONNS] [-c CONC] [-d SECS] [-P] [-s]
 *   -n  connections in all (default 20000)    -c  in flight (default 50)
 *   -d  bound on the whole run, seconds (60)  -P  a v2 header on each one
 *   -s  with -P: the header in its own write, before the request (as
 *       HAProxy sends it once connected); default: header and request in
 *       one write
 * Each connection: connect, [header +] "TIME\r\n", read the JAM line,
 * "QUIT\r\n", wait for the server to close. The header names a TCP/IPv4
 * client 192.0.2.X:PORT, a different one for each connection.
 * Prints one line of key=value pairs on stdout (the keys of jamload's).
 * IPv4 only; every run is bounded by -n and -d.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { FREE, CONNECTING, ASKED, QUITTING };

struct conn {
    int fd, state, inlen;
    uint64_t t0;
    char in[128];
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A PROXY v2 header: PROXY command, TCP over IPv4, 12 address bytes. */
static int v2_header(unsigned char *h, long i, uint16_t dport) {
    static const unsigned char sig[12] = "\r\n\r\n\0\r\nQUIT\n";
    memcpy(h, sig, 12);
    h[12] = 0x21;
    h[13] = 0x11;
    h[14] = 0;
    h[15] = 12;
    unsigned char *a = h + 16;
    a[0] = 192; a[1] = 0; a[2] = 2; a[3] = (unsigned char)(1 + i % 254);
    a[4] = 127; a[5] = 0; a[6] = 0; a[7] = 1;
    uint16_t sport = htons((uint16_t)(1024 + i % 60000)), dp = htons(dport);
    memcpy(a + 8, &sport, 2);
    memcpy(a + 10, &dp, 2);
    return 28;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 45000, conc = 50, proxy = 0, split = 0, opt;
    long n = 20000;
    double bound = 60;
    while ((opt = getopt(argc, argv, "h:p:n:c:d:Ps")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'n': n = atol(optarg); break;
        case 'c': conc = atoi(optarg); break;
        case 'd': bound = atof(optarg); break;
        case 'P': proxy = 1; break;
        case 's': split = 1; break;
        default:
            fprintf(stderr, "usage: proxyload [-h HOST] [-p PORT] [-n N] [-c C] [-d SECS] [-P] [-s]\n");
            return 2;
        }
    }
    if (n < 1 || conc < 1 || port < 1 || port > 65535) {
        fprintf(stderr, "proxyload: bad -n, -c or -p\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
        fprintf(stderr, "proxyload: -h takes an IPv4 address\n");
        return 2;
    }
    int ep = epoll_create1(0);
    struct conn *conns = calloc((size_t)conc, sizeof *conns);
    uint64_t *lat = calloc((size_t)n, sizeof *lat);
    if (ep < 0 || !conns || !lat) {
        perror("proxyload");
        return 1;
    }
    long started = 0, ok = 0, err = 0;
    uint64_t t_start = now_ns(), hard = t_start + (uint64_t)(bound * 1e9);

    /* Starts connection number `started` in slot k. */
#define START(k)                                                                          \
    do {                                                                                  \
        struct conn *c_ = &conns[k];                                                      \
        c_->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);          \
        int one_ = 1;                                                                     \
        setsockopt(c_->fd, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof one_);                 \
        c_->t0 = now_ns();                                                                \
        c_->inlen = 0;                                                                    \
        c_->state = CONNECTING;                                                           \
        if (connect(c_->fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS) { \
            close(c_->fd); c_->state = FREE; err++;                                       \
        } else {                                                                          \
            struct epoll_event ev_ = {.events = EPOLLOUT | EPOLLIN, .data.u64 = (uint64_t)(k)}; \
            epoll_ctl(ep, EPOLL_CTL_ADD, c_->fd, &ev_);                                   \
        }                                                                                 \
        started++;                                                                        \
    } while (0)
#define FINISH(k, good)                                                                   \
    do {                                                                                  \
        struct conn *c_ = &conns[k];                                                      \
        close(c_->fd);                                                                    \
        c_->state = FREE;                                                                 \
        if (good) lat[ok++] = now_ns() - c_->t0; else err++;                              \
        if (started < n && now_ns() < hard) START(k);                                     \
    } while (0)

    for (int k = 0; k < conc && started < n; k++) START(k);
    struct epoll_event evs[256];
    while (ok + err < started && now_ns() < hard) {
        int m = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < m; e++) {
            int k = (int)evs[e].data.u64;
            struct conn *c = &conns[k];
            if (c->state == CONNECTING) {
                int so = 0;
                socklen_t sl = sizeof so;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so, &sl);
                if (so != 0) { FINISH(k, 0); continue; }
                unsigned char out[64];
                int len = 0;
                if (proxy) {
                    len = v2_header(out, started + k, (uint16_t)port);
                    if (split) {
                        if (write(c->fd, out, (size_t)len) != len) { FINISH(k, 0); continue; }
                        len = 0;
                    }
                }
                memcpy(out + len, "TIME\r\n", 6);
                len += 6;
                if (write(c->fd, out, (size_t)len) != len) { FINISH(k, 0); continue; }
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)k};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->state = ASKED;
                continue;
            }
            ssize_t r = read(c->fd, c->in + c->inlen, sizeof c->in - 1 - (size_t)c->inlen);
            if (r < 0 && errno == EAGAIN) continue;
            if (c->state == QUITTING) {
                if (r == 0) FINISH(k, 1);
                else if (r < 0) FINISH(k, 0);
                continue;
            }
            if (r <= 0) { FINISH(k, 0); continue; }
            c->inlen += (int)r;
            c->in[c->inlen] = 0;
            if (!memchr(c->in, '\n', (size_t)c->inlen)) {
                if (c->inlen >= (int)sizeof c->in - 1) FINISH(k, 0);
                continue;
            }
            if (strncmp(c->in, "JAM ", 4) != 0 || write(c->fd, "QUIT\r\n", 6) != 6) {
                FINISH(k, 0);
                continue;
            }
            c->state = QUITTING;
        }
    }
    long unfinished = started - ok - err;
    double secs = (double)(now_ns() - t_start) / 1e9;
    qsort(lat, (size_t)ok, sizeof *lat, cmp_u64);
    double p50 = ok ? (double)lat[ok / 2] / 1e3 : 0, p99 = ok ? (double)lat[(ok * 99) / 100] / 1e3 : 0;
    printf("mode=%s conns_ok=%ld conns_err=%ld timeout=%ld seconds=%.3f conns_per_s=%.0f "
           "p50_us=%.0f p99_us=%.0f\n",
           proxy ? (split ? "proxy_v2_split" : "proxy_v2") : "plain", ok, err, unfinished, secs,
           secs > 0 ? (double)ok / secs : 0, p50, p99);
    return err || unfinished ? 1 : 0;
}
