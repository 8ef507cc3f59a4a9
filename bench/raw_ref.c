/*
 * Reference for the raw-SYN engine (issue 22): half-open probes the way
 * masscan and ZMap send them, in a loop on one thread, with nothing else
 * around them. It is to `engine: raw` what bench/halfopen_ref.c is to the
 * socket engine: the physical limit of the design, measured the same way
 * (getrusage CPU per probe, one JSON line).
 *
 * Set-up, once:
 *   - the source ports: BATCH ports of the range LO-HI (default 30000-30999,
 *     apart from Linux's ephemeral range and from the exporter's default
 *     61000-65535, so both can run at once), each held by an ordinary TCP
 *     socket bound to 0.0.0.0:port that never listens nor connects: the
 *     kernel hands the port to nobody else, and as no socket owns the
 *     4-tuple it answers every SYN-ACK to it with an RST itself, in the
 *     softirq that received it (that RST is what keeps the probe half-open);
 *     ports already in use are skipped;
 *   - socket(AF_INET, SOCK_RAW|SOCK_NONBLOCK|SOCK_CLOEXEC, IPPROTO_TCP),
 *     bound to 127.0.0.1 (the source address of every SYN), SO_RCVBUF 4 MiB,
 *     and a classic BPF filter passing only first fragments of TCP segments
 *     to a destination port in LO-HI with RST, or with SYN and ACK: the raw
 *     socket gets a copy of every TCP segment to this host, and everything
 *     else (the benchmark's own HTTP traffic, our own SYNs looping back, the
 *     kernel's RSTs) is dropped in the kernel; what was queued before the
 *     filter is drained;
 *   - a 128-bit key from getrandom().
 *
 * The loop keeps up to BATCH probes in flight, one per source port:
 *   - every free port gets the next target's SYN (IP_HDRINCL off: the kernel
 *     writes the IPv4 header; we write the 24-byte TCP header, MSS option,
 *     and its checksum over the IPv4 pseudo-header), all sent with one
 *     sendmmsg (called again for the rest after a partial send; a SYN the
 *     kernel refuses counts as `local`);
 *   - answers are read with recvmmsg(MSG_DONTWAIT), up to 64 at a time, and
 *     poll() waits only when nothing is queued and probes are in flight;
 *   - an answer is matched without any table of sequence numbers: the ISN
 *     of a SYN is SipHash-1-3 (the keyed hash the exporter's engine uses),
 *     under the key, of (destination address, destination port, source
 *     port, generation of the source port), truncated to 32 bits; the answer's
 *     destination port names the port's slot, and the answer counts only if
 *     it comes from the slot's target address and port with ack = ISN + 1
 *     (a SYN-ACK: success; an RST: refused). Anything else (forged, or
 *     stale: the generation moves on at every probe) is counted as
 *     `ignored` and dropped;
 *   - a probe without an answer for 1 s (halfopen_ref.c's epoll_wait limit)
 *     is a timeout; its port is reused with the next generation.
 *
 * Targets are the same as halfopen_ref.c's and the exporter's: target i is
 * 127.A.B.C with b = i / 254, A = 1 + b / 256, B = b % 256, C = 1 + i % 254
 * (never .0 or .255); even i on OPEN_PORT, odd i on CLOSED_PORT. Only
 * loopback. The scripts check that the listener accepted nothing.
 *
 * With --control the answers are checked against ISNs made with another
 * key: every answer must be `ignored` and every probe a timeout, which
 * shows the matching can fail (a run of a few hundred probes is enough).
 *
 * Needs CAP_NET_RAW (root).
 * Usage: raw_ref PROBES TARGETS OPEN_PORT CLOSED_PORT MAX_SECONDS [--batch N] [--ports LO-HI] [--control]
 *        (BATCH default 64, 1..1024)
 * Prints one JSON object.  Build: gcc -O2 -o raw_ref raw_ref.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SYN_LEN 24
#define RECV_BATCH 64
#define RECV_SIZE 256
#define MAX_BATCH 1024
#define TIMEOUT_S 1.0

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

/* SipHash-1-3 (one compression round, three finalisation rounds), after
 * the reference implementation by Aumasson and Bernstein. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                                  \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                     \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                     \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                                  \
    } while (0)

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t siphash13(const uint8_t *in, size_t len, const uint64_t key[2]) {
    uint64_t v0 = 0x736f6d6570736575ULL ^ key[0], v1 = 0x646f72616e646f6dULL ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ key[0], v3 = 0x7465646279746573ULL ^ key[1];
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = le64(in + i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++) b |= (uint64_t)in[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* The ISN of a probe: (daddr, dport, sport, generation), network order for
 * the address and ports. */
static uint32_t isn_of(const uint64_t key[2], uint32_t daddr_be, uint16_t dport, uint16_t sport,
                       uint32_t generation) {
    uint8_t in[12];
    memcpy(in, &daddr_be, 4);
    in[4] = dport >> 8;
    in[5] = dport & 0xff;
    in[6] = sport >> 8;
    in[7] = sport & 0xff;
    memcpy(in + 8, &generation, 4);
    return (uint32_t)siphash13(in, sizeof in, key);
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = v >> 8;
    p[1] = v & 0xff;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24;
    p[1] = (v >> 16) & 0xff;
    p[2] = (v >> 8) & 0xff;
    p[3] = v & 0xff;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The SYN: 20-byte TCP header and the MSS option, checksum over the IPv4
 * pseudo-header (addresses in host order here). */
static void build_syn(uint8_t seg[SYN_LEN], uint32_t saddr, uint32_t daddr, uint16_t sport,
                      uint16_t dport, uint32_t isn) {
    memset(seg, 0, SYN_LEN);
    put16(seg, sport);
    put16(seg + 2, dport);
    put32(seg + 4, isn);
    seg[12] = (SYN_LEN / 4) << 4; /* data offset 6 */
    seg[13] = 0x02;               /* SYN */
    put16(seg + 14, 64240);       /* Linux's initial window */
    seg[20] = 2;                  /* MSS 1460 */
    seg[21] = 4;
    put16(seg + 22, 1460);
    uint32_t sum = (saddr >> 16) + (saddr & 0xffff) + (daddr >> 16) + (daddr & 0xffff) +
                   IPPROTO_TCP + SYN_LEN;
    for (int i = 0; i < SYN_LEN; i += 2) sum += get16(seg + i);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    put16(seg + 16, (uint16_t)~sum);
}

struct slot {
    uint16_t port;
    uint32_t generation;
    int busy;
    uint32_t daddr; /* host order */
    uint16_t dport;
    uint32_t isn;
    uint32_t expected_ack; /* isn + 1; with --control, from another key */
    double sent;
    uint8_t seg[SYN_LEN];
    struct sockaddr_in to;
    struct iovec iov;
};

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s PROBES TARGETS OPEN_PORT CLOSED_PORT MAX_SECONDS [--batch N] [--ports LO-HI] [--control]\n",
                argv[0]);
        return 2;
    }
    long probes = atol(argv[1]);
    long targets = atol(argv[2]);
    int open_port = atoi(argv[3]);
    int closed_port = atoi(argv[4]);
    double max_seconds = atof(argv[5]);
    int batch = 64, control = 0;
    unsigned lo = 30000, hi = 30999;
    for (int a = 6; a < argc; a++) {
        if (strcmp(argv[a], "--batch") == 0 && a + 1 < argc) {
            batch = atoi(argv[++a]);
        } else if (strcmp(argv[a], "--control") == 0) {
            control = 1;
        } else if (strcmp(argv[a], "--ports") == 0 && a + 1 < argc) {
            if (sscanf(argv[++a], "%u-%u", &lo, &hi) != 2) lo = hi + 1;
        } else {
            fprintf(stderr, "unknown option %s\n", argv[a]);
            return 2;
        }
    }
    if (probes <= 0 || targets <= 0 || targets > 254L * 256 * 254) {
        fprintf(stderr, "bad PROBES or TARGETS\n");
        return 2;
    }
    if (batch < 1 || batch > MAX_BATCH || lo < 1 || hi > 65535 || lo > hi) {
        fprintf(stderr, "bad --batch (1..%d) or --ports LO-HI\n", MAX_BATCH);
        return 2;
    }

    /* The source ports, held by bound sockets that never listen. */
    static struct slot slots[MAX_BATCH];
    static int16_t slot_of_port[65536];
    memset(slot_of_port, -1, sizeof slot_of_port);
    int nslots = 0;
    for (unsigned p = lo; p <= hi && nslots < batch; p++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0) {
            perror("socket");
            return 2;
        }
        struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
        if (bind(fd, (struct sockaddr *)&any, sizeof any) < 0) {
            close(fd); /* in use: skip it */
            continue;
        }
        slots[nslots].port = (uint16_t)p;
        slot_of_port[p] = (int16_t)nslots;
        nslots++;
    }
    if (nslots < batch) {
        fprintf(stderr, "only %d of the %d source ports needed are free in %u-%u\n", nslots, batch, lo, hi);
        return 2;
    }

    int raw = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (raw < 0) {
        perror("socket(AF_INET, SOCK_RAW, IPPROTO_TCP) (needs CAP_NET_RAW)");
        return 2;
    }
    const uint32_t saddr = INADDR_LOOPBACK;
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(saddr)};
    if (bind(raw, (struct sockaddr *)&src, sizeof src) < 0) {
        perror("bind raw socket to 127.0.0.1");
        return 2;
    }
    int rcvbuf = 4 << 20;
    if (setsockopt(raw, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        setsockopt(raw, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    /* Offset 0 is the IPv4 header. */
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),                 /* 0: flags + fragment offset */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 9, 0),    /* 1: not the first fragment: drop */
        BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),                /* 2: x = IPv4 header length */
        BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),                 /* 3: TCP destination port */
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, lo, 0, 6),         /* 4: < LO: drop */
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, hi, 5, 0),         /* 5: > HI: drop */
        BPF_STMT(BPF_LD | BPF_B | BPF_IND, 13),                /* 6: TCP flags */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x04, 2, 0),      /* 7: RST: keep */
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),             /* 8: SYN and ACK ... */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x12, 0, 1),       /* 9: ... both: keep, else drop */
        BPF_STMT(BPF_RET | BPF_K, RECV_SIZE),                  /* 10: keep */
        BPF_STMT(BPF_RET | BPF_K, 0),                          /* 11: drop */
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    if (setsockopt(raw, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
        perror("SO_ATTACH_FILTER");
        return 2;
    }
    static uint8_t bufs[RECV_BATCH][RECV_SIZE];
    static struct iovec riov[RECV_BATCH];
    static struct mmsghdr rmsg[RECV_BATCH];
    for (int i = 0; i < RECV_BATCH; i++) {
        riov[i].iov_base = bufs[i];
        riov[i].iov_len = RECV_SIZE;
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
    }
    /* What arrived before the filter. */
    while (recvmmsg(raw, rmsg, RECV_BATCH, MSG_DONTWAIT, NULL) > 0) {
    }

    uint64_t key[2], other_key[2];
    if (getrandom(key, sizeof key, 0) != sizeof key || getrandom(other_key, sizeof other_key, 0) != sizeof other_key) {
        perror("getrandom");
        return 2;
    }

    static struct mmsghdr smsg[MAX_BATCH];
    static int sending[MAX_BATCH];
    int free_stack[MAX_BATCH], nfree = 0;
    for (int s = nslots - 1; s >= 0; s--) free_stack[nfree++] = s;
    long next = 0, done = 0, success = 0, refused = 0, timeout = 0, local = 0, ignored = 0;
    long sendmmsg_calls = 0, recvmmsg_calls = 0, polls = 0;
    int in_flight = 0;
    double started = now(), last_sweep = started;
    int stop = 0;

    while (!stop || in_flight > 0) {
        /* 1. A SYN on every free port. */
        int n = 0;
        if (!stop && now() - started > max_seconds) stop = 1;
        while (!stop && nfree > 0 && next < probes) {
            int s = free_stack[--nfree];
            struct slot *sl = &slots[s];
            long t = next % targets;
            long block = t / 254;
            sl->daddr = (127u << 24) | ((unsigned)(1 + block / 256) << 16) | ((unsigned)(block % 256) << 8) |
                        (unsigned)(1 + t % 254);
            sl->dport = (uint16_t)(t % 2 == 0 ? open_port : closed_port);
            sl->generation++;
            sl->isn = isn_of(key, htonl(sl->daddr), sl->dport, sl->port, sl->generation);
            sl->expected_ack = 1 + (control ? isn_of(other_key, htonl(sl->daddr), sl->dport, sl->port, sl->generation)
                                            : sl->isn);
            build_syn(sl->seg, saddr, sl->daddr, sl->port, sl->dport, sl->isn);
            sl->to.sin_family = AF_INET;
            sl->to.sin_addr.s_addr = htonl(sl->daddr);
            sl->iov.iov_base = sl->seg;
            sl->iov.iov_len = SYN_LEN;
            memset(&smsg[n], 0, sizeof smsg[n]);
            smsg[n].msg_hdr.msg_name = &sl->to;
            smsg[n].msg_hdr.msg_namelen = sizeof sl->to;
            smsg[n].msg_hdr.msg_iov = &sl->iov;
            smsg[n].msg_hdr.msg_iovlen = 1;
            sending[n++] = s;
            next++;
        }
        if (next >= probes) stop = 1;
        if (n > 0) {
            double t_send = now();
            int first = 0;
            while (first < n) {
                int sent = sendmmsg(raw, smsg + first, (unsigned)(n - first), 0);
                sendmmsg_calls++;
                if (sent < 0) {
                    if (errno == EINTR) continue;
                    if (errno == EAGAIN || errno == ENOBUFS) {
                        struct pollfd w = {.fd = raw, .events = POLLOUT};
                        poll(&w, 1, 10);
                        continue;
                    }
                    /* The kernel refused this SYN: the probe fails as local. */
                    int s = sending[first++];
                    local++;
                    done++;
                    free_stack[nfree++] = s;
                    continue;
                }
                for (int i = first; i < first + sent; i++) {
                    slots[sending[i]].busy = 1;
                    slots[sending[i]].sent = t_send;
                    in_flight++;
                }
                first += sent;
            }
        }

        /* 2. The answers queued so far; wait only when there are none. */
        int got = recvmmsg(raw, rmsg, RECV_BATCH, MSG_DONTWAIT, NULL);
        recvmmsg_calls++;
        if (got < 0 && errno != EAGAIN && errno != EINTR) {
            perror("recvmmsg");
            return 2;
        }
        if (got <= 0 && in_flight > 0 && (nfree == 0 || stop)) {
            struct pollfd r = {.fd = raw, .events = POLLIN};
            polls++;
            if (poll(&r, 1, 100) > 0) {
                got = recvmmsg(raw, rmsg, RECV_BATCH, MSG_DONTWAIT, NULL);
                recvmmsg_calls++;
            }
        }
        for (int i = 0; i < got; i++) {
            const uint8_t *b = bufs[i];
            unsigned len = rmsg[i].msg_len;
            if (len > RECV_SIZE) len = RECV_SIZE;
            unsigned ihl = len >= 20 ? (b[0] & 0x0f) * 4u : 0;
            if (ihl < 20 || len < ihl + 20) {
                ignored++;
                continue;
            }
            const uint8_t *tcp = b + ihl;
            int s = slot_of_port[get16(tcp + 2)];
            uint8_t flags = tcp[13];
            struct slot *sl = s >= 0 ? &slots[s] : NULL;
            if (!sl || !sl->busy || get32(b + 12) != sl->daddr || get16(tcp) != sl->dport ||
                !(flags & 0x10) || get32(tcp + 8) != sl->expected_ack) {
                ignored++; /* forged, stale, or a stranger's */
                continue;
            }
            if (flags & 0x04)
                refused++;
            else
                success++;
            sl->busy = 0;
            in_flight--;
            done++;
            free_stack[nfree++] = s;
        }

        /* 3. Timeouts, swept ten times a second. */
        double t = now();
        if (in_flight > 0 && t - last_sweep >= 0.1) {
            last_sweep = t;
            for (int s = 0; s < nslots; s++) {
                if (slots[s].busy && t - slots[s].sent >= TIMEOUT_S) {
                    slots[s].busy = 0;
                    in_flight--;
                    timeout++;
                    done++;
                    free_stack[nfree++] = s;
                }
            }
        }
    }
    double wall = now() - started;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = tv(ru.ru_utime), sys = tv(ru.ru_stime);
    printf("{\"mode\": \"raw-batch%d%s\", \"probes\": %ld, \"success\": %ld, \"refused\": %ld, \"timeout\": %ld, "
           "\"other\": 0, \"local\": %ld, \"ignored\": %ld, \"batch\": %d, \"ports\": \"%u-%u\", "
           "\"sendmmsg_calls\": %ld, \"recvmmsg_calls\": %ld, \"polls\": %ld, \"wall_s\": %.6f, "
           "\"user_s\": %.6f, \"sys_s\": %.6f, \"cpu_per_probe_us\": %.3f, \"probes_per_s\": %.1f, "
           "\"completed\": %s}\n",
           batch, control ? "-control" : "", done, success, refused, timeout, local, ignored, batch, lo, hi, sendmmsg_calls,
           recvmmsg_calls, polls, wall, user, sys, done ? (user + sys) / (double)done * 1e6 : 0.0,
           wall > 0 ? (double)done / wall : 0.0, done == probes ? "true" : "false");
    return 0;
}
