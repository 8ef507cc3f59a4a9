/*
 * Reference for bench/scheduler_100k.sh: the syscalls of one half-open
 * probe, in a loop on one thread, with nothing else around them.
 *
 * Per probe:
 *   socket(AF_INET, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC)
 *   setsockopt(TCP_QUICKACK, 0)         -> delayed ACK: SYN, SYN-ACK, RST
 *   setsockopt(SO_LINGER, {1, 0})       -> close() sends RST, no TIME_WAIT
 *   epoll_ctl(ADD, EPOLLOUT)
 *   connect()                           -> EINPROGRESS (or 0)
 *   epoll_wait()                        -> EPOLLOUT / EPOLLERR
 *   getsockopt(SO_ERROR)
 *   close()                             (also leaves the epoll set)
 *
 * With --like-tokio it also does what the exporter's prober does on top:
 * getpeername() after a clear SO_ERROR and an explicit epoll_ctl(DEL)
 * before close(), so the two can be told apart.
 *
 * With --probe-truth it also makes the two calls issue 12 added to every
 * probe: setsockopt(IP_RECVERR, 1) before connect(), and
 * getsockopt(TCP_INFO) after a successful one (bench/probe_truth_cost.sh
 * compares it with the minimal loop).
 *
 * Targets are the same as the exporter's: target i is 127.A.B.C with
 * b = i / 254, A = 1 + b / 256, B = b % 256, C = 1 + i % 254 (never .0 or
 * .255); even i on OPEN_PORT, odd i on CLOSED_PORT. Only loopback.
 *
 * Usage: halfopen_ref PROBES TARGETS OPEN_PORT CLOSED_PORT MAX_SECONDS [--like-tokio] [--probe-truth]
 * Prints one JSON object.  Build: gcc -O2 -o halfopen_ref halfopen_ref.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s PROBES TARGETS OPEN_PORT CLOSED_PORT MAX_SECONDS [--like-tokio] [--probe-truth]\n", argv[0]);
        return 2;
    }
    long probes = atol(argv[1]);
    long targets = atol(argv[2]);
    int open_port = atoi(argv[3]);
    int closed_port = atoi(argv[4]);
    double max_seconds = atof(argv[5]);
    int like_tokio = 0, probe_truth = 0;
    for (int a = 6; a < argc; a++) {
        if (strcmp(argv[a], "--like-tokio") == 0) like_tokio = 1;
        else if (strcmp(argv[a], "--probe-truth") == 0) probe_truth = 1;
        else {
            fprintf(stderr, "unknown option %s\n", argv[a]);
            return 2;
        }
    }
    if (probes <= 0 || targets <= 0 || targets > 254L * 256 * 254) {
        fprintf(stderr, "bad PROBES or TARGETS\n");
        return 2;
    }

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 2;
    }
    long done = 0, success = 0, refused = 0, timeout = 0, other = 0, immediate = 0, local = 0;
    double started = now();
    int quickack = 0, recverr = 1;
    struct linger linger = {1, 0};
    for (long i = 0; i < probes; i++) {
        if ((i & 1023) == 0 && now() - started > max_seconds) break;
        long t = i % targets;
        long block = t / 254;
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons(t % 2 == 0 ? open_port : closed_port);
        sa.sin_addr.s_addr = htonl((127u << 24) | ((unsigned)(1 + block / 256) << 16) |
                                   ((unsigned)(block % 256) << 8) | (unsigned)(1 + t % 254));

        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0) {
            local++;
            done++;
            continue;
        }
        if (setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &quickack, sizeof quickack) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger) < 0 ||
            (probe_truth && setsockopt(fd, IPPROTO_IP, IP_RECVERR, &recverr, sizeof recverr) < 0)) {
            local++;
            close(fd);
            done++;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            local++;
            close(fd);
            done++;
            continue;
        }
        int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        int err = 0;
        if (rc == 0) {
            immediate++;
        } else if (errno == EINPROGRESS) {
            struct epoll_event out;
            int n = epoll_wait(ep, &out, 1, 1000);
            if (n == 0) {
                err = ETIMEDOUT;
            } else {
                socklen_t len = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
                if (err == 0 && like_tokio) {
                    struct sockaddr_in peer;
                    socklen_t plen = sizeof peer;
                    if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0) err = errno;
                }
                if (err == 0 && probe_truth) {
                    struct tcp_info info;
                    socklen_t ilen = sizeof info;
                    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &ilen) < 0) err = errno;
                }
            }
        } else {
            err = errno;
        }
        if (like_tokio) epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        done++;
        if (err == 0) success++;
        else if (err == ECONNREFUSED) refused++;
        else if (err == ETIMEDOUT) timeout++;
        else other++;
    }
    double wall = now() - started;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = tv(ru.ru_utime), sys = tv(ru.ru_stime);
    printf("{\"mode\": \"%s\", \"probes\": %ld, \"success\": %ld, \"refused\": %ld, \"timeout\": %ld, "
           "\"other\": %ld, \"local\": %ld, \"connect_returned_0\": %ld, \"wall_s\": %.6f, "
           "\"user_s\": %.6f, \"sys_s\": %.6f, \"cpu_per_probe_us\": %.3f, \"probes_per_s\": %.1f, "
           "\"completed\": %s}\n",
           like_tokio && probe_truth ? "like-tokio+probe-truth"
           : like_tokio             ? "like-tokio"
           : probe_truth            ? "probe-truth"
                                    : "minimal",
           done, success, refused, timeout, other, local,
           immediate, wall, user, sys, done ? (user + sys) / (double)done * 1e6 : 0.0,
           wall > 0 ? (double)done / wall : 0.0, done == probes ? "true" : "false");
    return 0;
}
