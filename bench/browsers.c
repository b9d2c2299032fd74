/* Many browsers: STREAMS SSE streams held open by one process, every event checked.
 *
 * Built by bench/browsers.py with gcc at bench time. One epoll set; every socket is bound
 * to SOURCE (a loopback address of its own per client process: one source address reaches
 * only ~28k ports towards one server port) before it connects. At most INFLIGHT streams
 * wait for an answer at a time. A refusal (503 or 429: a worker at SSE_MAX_STREAMS, when
 * the kernel spreads accepts unevenly over workers) or a failed connect is retried after
 * RETRY_S (1 s, the gateway's Retry-After: retrying sooner only keeps the full workers busy); a stream counts as open at its first body byte ("body": our gateway sends it
 * once the stream is subscribed) or at the end of its head ("head": nchan).
 *
 * Open streams are parsed incrementally (chunked framing, then SSE lines) and every event
 * checked: its data carries "<TAG>-<seq>-..." and "created_at" (the publish time, UTC with
 * microseconds), its id "<channel>=<ms>-<n>". Per stream: events in order, sequence gaps,
 * duplicates, ids that do not increase. Publish-to-receive latency goes into a histogram
 * of 100 µs buckets.
 *
 * usage: browsers HOST PORT PATH STREAMS SOURCE INFLIGHT TAG head|body
 * stdout: one JSON line once every stream is open or has failed for good; then commands on
 * stdin, one a line:
 *   collect N SECONDS  wait until every open stream has N events in order (at most
 *                      SECONDS), then one JSON line with the counts (since the start)
 *                      and the latencies (since the last collect)
 *   close (or EOF)     close every stream with RST and exit
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define LINE_MAX_BYTES 240
#define BUCKET_US 100
#define BUCKETS 200000 /* 20 s; later ones go to the last bucket */
#define RETRY_S 1.0 /* the gateway's Retry-After */
#define MAX_ATTEMPTS 200
#define STDIN_TAG UINT32_MAX

enum state { IDLE, CONNECTING, HEAD, BODY_WAIT, OPEN, RETRY_WAIT, FAILED, CLOSED };
enum framing { F_SIZE, F_DATA, F_CRLF, F_END };

struct stream {
    int fd;
    uint8_t state;
    uint8_t chunked;
    uint8_t framing;
    uint8_t line_over; /* the current line was longer than the buffer */
    uint8_t has_data;
    uint8_t size_ext; /* in a chunk-size line's extension */
    uint16_t line_len;
    uint16_t attempts;
    uint32_t chunk_left;
    int32_t pending_seq;  /* of the frame being read; -1: none */
    int64_t pending_created_us;
    uint64_t pending_ms, pending_n; /* its id */
    uint8_t pending_has_id;
    int32_t next_seq;     /* the sequence number expected next */
    int32_t in_order;     /* events received in order, gaps skipped */
    uint32_t gaps;        /* events skipped */
    uint32_t duplicates;  /* events at or below one already received */
    uint32_t ids_back;    /* ids that did not increase */
    uint32_t parse_errors;
    uint64_t last_ms, last_n;
    double retry_at;
    char line[LINE_MAX_BYTES];
};

static struct stream *streams;
static int total, inflight_max, want_body, ep;
static const char *tag;
static size_t tag_len;
static char request[4096];
static int request_len;
static struct sockaddr_in server_addr, source_addr;
static int started, waiting, opened, failed_for_good, refused, retried, closed_after_open;
static int *retry_queue, retry_head, retry_tail; /* FIFO: every wait is RETRY_S */
static uint32_t *hist;
static uint64_t latency_count, latency_late;
static int64_t latency_max_us;
static char first_error[256];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void note_error(const char *what, int err) {
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "%s: %s", what, err ? strerror(err) : "");
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* "2026-12-02T00:24:04.938410Z" (fraction optional) as µs since the epoch; -1 if not. */
static int64_t parse_time_us(const char *s) {
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return -1;
    int64_t us = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + sec;
    us *= 1000000;
    const char *p = s + n;
    if (*p == '.') {
        int64_t frac = 0, scale = 100000;
        for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
            if (scale)
                frac += (*p - '0') * scale;
        us += frac;
    }
    return us;
}

static void on_data_line(struct stream *s, const char *v) {
    /* {"message":"<tag>-00000042-xxx","created_at":"..."} */
    const char *m = strstr(v, "\"message\":\"");
    const char *c = strstr(v, "\"created_at\":\"");
    if (m == NULL || c == NULL) {
        s->parse_errors++;
        return;
    }
    m += 11;
    if (strncmp(m, tag, tag_len) != 0 || m[tag_len] != '-') {
        s->parse_errors++;
        return;
    }
    s->pending_seq = atoi(m + tag_len + 1);
    s->pending_created_us = parse_time_us(c + 14);
}

static void on_id_line(struct stream *s, const char *v) {
    /* ours: "<channel>=<ms>-<n>" (one channel per stream here); nchan: "<s>:<n>" (its
     * own, also increasing) */
    const char *eq = strrchr(v, '=');
    unsigned long long ms, n;
    if (eq != NULL ? sscanf(eq + 1, "%llu-%llu", &ms, &n) != 2
                   : sscanf(v, " %llu:%llu", &ms, &n) != 2) {
        s->parse_errors++;
        return;
    }
    s->pending_ms = ms, s->pending_n = n, s->pending_has_id = 1;
}

static void dispatch(struct stream *s, int64_t received_us) {
    if (s->has_data) {
        if (s->pending_seq < 0) {
            s->parse_errors++;
        } else if (s->pending_seq >= s->next_seq) {
            s->gaps += s->pending_seq - s->next_seq;
            s->next_seq = s->pending_seq + 1;
            s->in_order++;
            if (s->pending_created_us > 0) {
                int64_t lat = received_us - s->pending_created_us;
                if (lat < 0)
                    lat = 0;
                int64_t b = lat / BUCKET_US;
                if (b >= BUCKETS)
                    b = BUCKETS - 1, latency_late++;
                hist[b]++;
                latency_count++;
                if (lat > latency_max_us)
                    latency_max_us = lat;
            }
        } else {
            s->duplicates++;
        }
    }
    if (s->pending_has_id) {
        if (s->pending_ms < s->last_ms ||
            (s->pending_ms == s->last_ms && s->pending_n <= s->last_n && s->last_ms)) {
            s->ids_back++;
        }
        s->last_ms = s->pending_ms, s->last_n = s->pending_n;
    }
    s->has_data = 0, s->pending_has_id = 0, s->pending_seq = -1, s->pending_created_us = 0;
}

static void on_line(struct stream *s, int64_t received_us) {
    if (s->line_len && s->line[s->line_len - 1] == '\r')
        s->line_len--;
    s->line[s->line_len] = 0;
    if (s->line_len == 0) {
        dispatch(s, received_us);
        return;
    }
    if (s->line_over) {
        s->parse_errors++;
        return;
    }
    if (strncmp(s->line, "data:", 5) == 0) {
        s->has_data = 1;
        on_data_line(s, s->line + 5);
    } else if (strncmp(s->line, "id:", 3) == 0) {
        on_id_line(s, s->line + 3);
    }
    /* event:, retry: and comments carry nothing to check */
}

/* SSE bytes of one stream's body. */
static void on_body(struct stream *s, const char *p, size_t n, int64_t received_us) {
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\n') {
            on_line(s, received_us);
            s->line_len = 0, s->line_over = 0;
        } else if (s->line_len < LINE_MAX_BYTES - 1) {
            s->line[s->line_len++] = ch;
        } else {
            s->line_over = 1;
        }
    }
}

/* Chunked framing around the body (uvicorn sends it). */
static void on_framed(struct stream *s, const char *p, size_t n, int64_t received_us) {
    if (!s->chunked) {
        on_body(s, p, n, received_us);
        return;
    }
    size_t i = 0;
    while (i < n) {
        switch (s->framing) {
        case F_SIZE: {
            char ch = p[i++];
            if (ch == '\n') {
                s->framing = s->chunk_left == 0 ? F_END : F_DATA;
                s->size_ext = 0;
            } else if (isxdigit((unsigned char)ch) && !s->size_ext) {
                s->chunk_left = s->chunk_left * 16 + (isdigit((unsigned char)ch)
                                                          ? ch - '0'
                                                          : (tolower((unsigned char)ch) - 'a' + 10));
            } else if (ch == ';') {
                s->size_ext = 1; /* an extension: ignore to the end of the line */
            }
            break;
        }
        case F_DATA: {
            size_t take = n - i < s->chunk_left ? n - i : s->chunk_left;
            on_body(s, p + i, take, received_us);
            i += take, s->chunk_left -= take;
            if (s->chunk_left == 0)
                s->framing = F_CRLF;
            break;
        }
        case F_CRLF:
            if (p[i++] == '\n')
                s->framing = F_SIZE;
            break;
        case F_END:
            return;
        }
    }
}

static void queue_retry(int index) {
    struct stream *s = &streams[index];
    if (++s->attempts >= MAX_ATTEMPTS) {
        s->state = FAILED, failed_for_good++;
        return;
    }
    s->state = RETRY_WAIT, retried++;
    s->retry_at = now() + RETRY_S;
    retry_queue[retry_tail++ % total] = index;
}

static void drop(int index) {
    struct stream *s = &streams[index];
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
}

static void start(int index) {
    struct stream *s = &streams[index];
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s->fd < 0) {
        note_error("socket", errno);
        queue_retry(index);
        return;
    }
    struct linger lg = {1, 0}; /* close() sends RST: no TIME_WAIT left behind */
    setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    int one = 1;
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(s->fd, (struct sockaddr *)&source_addr, sizeof source_addr) < 0) {
        note_error("bind", errno);
        close(s->fd);
        queue_retry(index);
        return;
    }
    int rc = connect(s->fd, (struct sockaddr *)&server_addr, sizeof server_addr);
    if (rc < 0 && errno != EINPROGRESS) {
        note_error("connect", errno);
        close(s->fd);
        queue_retry(index);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = index};
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
    s->state = CONNECTING, s->line_len = 0, s->line_over = 0, s->chunk_left = 0;
    s->framing = F_SIZE, s->chunked = 0, s->size_ext = 0;
    waiting++;
}

/* A line of the response head; returns -1 to give up on this attempt, 1 at its end. */
static int on_head_line(int index) {
    struct stream *s = &streams[index];
    if (s->line_len && s->line[s->line_len - 1] == '\r')
        s->line_len--;
    s->line[s->line_len] = 0;
    if (s->line_len == 0)
        return 1;
    if (strncmp(s->line, "HTTP/1.", 7) == 0) {
        int status = atoi(s->line + 9);
        if (status != 200) {
            if (status == 503 || status == 429) {
                refused++;
            } else {
                char what[64];
                snprintf(what, sizeof what, "status %d", status);
                note_error(what, 0);
            }
            return -1;
        }
    } else if (strncasecmp(s->line, "transfer-encoding:", 18) == 0 &&
               strcasestr(s->line, "chunked")) {
        s->chunked = 1;
    }
    return 0;
}

static void became_open(int index) {
    struct stream *s = &streams[index];
    s->state = OPEN, waiting--, opened++;
    s->line_len = 0, s->line_over = 0, s->pending_seq = -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = index};
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

static char buffer[1 << 16];

static void on_event(uint32_t index, uint32_t events) {
    struct stream *s = &streams[index];
    if (s->state == CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || write(s->fd, request, request_len) != request_len) {
            note_error("connect/send", err ? err : errno);
            drop(index), waiting--;
            queue_retry(index);
            return;
        }
        s->state = HEAD;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = index};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        return;
    }
    ssize_t got = read(s->fd, buffer, sizeof buffer);
    if (got < 0 && errno == EAGAIN)
        return;
    if (got <= 0) {
        drop(index);
        if (s->state == HEAD || s->state == BODY_WAIT) {
            note_error("closed before the answer", got < 0 ? errno : 0);
            waiting--;
            queue_retry(index);
        } else {
            s->state = CLOSED, closed_after_open++;
            note_error("stream closed by the server", got < 0 ? errno : 0);
        }
        return;
    }
    int64_t received = wall_us();
    size_t pos = 0;
    while (s->state == HEAD && pos < (size_t)got) {
        char ch = buffer[pos++];
        if (ch != '\n') {
            if (s->line_len < LINE_MAX_BYTES - 1)
                s->line[s->line_len++] = ch;
            continue;
        }
        int end = on_head_line(index);
        s->line_len = 0;
        if (end < 0) {
            drop(index), waiting--;
            queue_retry(index);
            return;
        }
        if (end > 0) {
            if (want_body)
                s->state = BODY_WAIT; /* open at the first body byte */
            else
                became_open(index);
        }
    }
    if (s->state == HEAD || pos == (size_t)got)
        return;
    if (s->state == BODY_WAIT)
        became_open(index);
    on_framed(s, buffer + pos, got - pos, received);
}

static int process_events(int timeout_ms) {
    struct epoll_event events[1024];
    int n = epoll_wait(ep, events, 1024, timeout_ms);
    int stdin_ready = 0;
    for (int i = 0; i < n; i++) {
        if (events[i].data.u32 == STDIN_TAG)
            stdin_ready = 1;
        else
            on_event(events[i].data.u32, events[i].events);
    }
    return stdin_ready;
}

static void open_all(void) {
    double t0 = now(), last_progress = t0;
    int last_count = 0;
    while (opened + failed_for_good < total) {
        double t = now();
        while (waiting < inflight_max) {
            if (retry_head < retry_tail &&
                streams[retry_queue[retry_head % total]].retry_at <= t) {
                start(retry_queue[retry_head++ % total]);
            } else if (started < total) {
                start(started++);
            } else {
                break;
            }
        }
        process_events(20);
        if (opened + failed_for_good != last_count) {
            last_count = opened + failed_for_good, last_progress = now();
        } else if (now() - last_progress > 60.0) {
            note_error("no stream opened for 60 s", 0);
            break;
        }
    }
    double seconds = now() - t0;
    printf("{\"streams\": %d, \"opened\": %d, \"failed\": %d, \"refused\": %d, \"retried\": %d, "
           "\"open_s\": %.3f, \"first_error\": \"%s\"}\n",
           total, opened, total - opened, refused, retried, seconds, first_error);
    fflush(stdout);
}

static double percentile_ms(double q) {
    if (!latency_count)
        return -1;
    uint64_t rank = (uint64_t)(q * (latency_count - 1)), seen = 0;
    for (int b = 0; b < BUCKETS; b++) {
        seen += hist[b];
        if (seen > rank)
            return (b + 0.5) * BUCKET_US / 1000.0;
    }
    return -1;
}

static void collect(int expect, double seconds) {
    double t0 = now(), deadline = t0 + seconds;
    for (;;) {
        int complete = 0;
        for (int i = 0; i < total; i++)
            if (streams[i].state == OPEN && streams[i].next_seq >= expect)
                complete++;
        if (complete + closed_after_open + failed_for_good >= total || now() >= deadline)
            break;
        process_events(50);
    }
    uint64_t in_order = 0, gaps = 0, dups = 0, ids_back = 0, parse_errors = 0, lost = 0;
    int complete = 0, open_now = 0;
    for (int i = 0; i < total; i++) {
        struct stream *s = &streams[i];
        if (s->state != OPEN && s->state != CLOSED)
            continue;
        open_now += s->state == OPEN;
        in_order += s->in_order, gaps += s->gaps, dups += s->duplicates;
        ids_back += s->ids_back, parse_errors += s->parse_errors;
        int got = s->in_order < expect ? s->in_order : expect;
        lost += expect - got;
        complete += s->next_seq == expect && s->in_order == expect && s->gaps == 0;
    }
    printf("{\"streams\": %d, \"open\": %d, \"closed\": %d, \"expected_per_stream\": %d, "
           "\"expected\": %llu, \"received\": %llu, \"complete\": %d, \"lost\": %llu, "
           "\"gaps\": %llu, \"duplicated\": %llu, \"ids_not_increasing\": %llu, "
           "\"parse_errors\": %llu, \"collect_s\": %.3f, \"latency_ms\": {\"count\": %llu, "
           "\"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, \"max\": %.2f, \"over_20s\": %llu}, "
           "\"bucket_us\": %d, \"histogram\": [",
           opened, open_now, closed_after_open, expect,
           (unsigned long long)expect * (unsigned long long)opened,
           (unsigned long long)in_order, complete, (unsigned long long)lost,
           (unsigned long long)gaps, (unsigned long long)dups, (unsigned long long)ids_back,
           (unsigned long long)parse_errors, now() - t0, (unsigned long long)latency_count,
           percentile_ms(0.5), percentile_ms(0.9), percentile_ms(0.99), latency_max_us / 1000.0,
           (unsigned long long)latency_late, BUCKET_US);
    int first = 1;
    for (int b = 0; b < BUCKETS; b++) {
        if (!hist[b])
            continue;
        printf("%s[%d, %u]", first ? "" : ", ", b, hist[b]);
        first = 0;
    }
    printf("], \"first_error\": \"%s\"}\n", first_error);
    fflush(stdout);
    /* the next collect reports its own round's latencies (counts stay cumulative) */
    memset(hist, 0, BUCKETS * sizeof *hist);
    latency_count = latency_late = 0, latency_max_us = 0;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr,
                "usage: %s HOST PORT PATH STREAMS SOURCE INFLIGHT TAG head|body\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *path = argv[3];
    int port = atoi(argv[2]);
    total = atoi(argv[4]);
    inflight_max = atoi(argv[6]);
    tag = argv[7], tag_len = strlen(tag);
    want_body = strcmp(argv[8], "body") == 0;
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max; /* one descriptor per stream: take all this process may */
    setrlimit(RLIMIT_NOFILE, &lim);
    if ((rlim_t)total + 16 > lim.rlim_cur) {
        fprintf(stderr, "%d streams need more than RLIMIT_NOFILE %llu\n", total,
                (unsigned long long)lim.rlim_cur);
        return 2;
    }
    request_len = snprintf(request, sizeof request,
                           "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n",
                           path, host, port);
    server_addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port)};
    source_addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = 0};
    if (inet_pton(AF_INET, host, &server_addr.sin_addr) != 1 ||
        inet_pton(AF_INET, argv[5], &source_addr.sin_addr) != 1) {
        fprintf(stderr, "bad address\n");
        return 2;
    }
    streams = calloc(total, sizeof *streams);
    retry_queue = calloc(total, sizeof *retry_queue);
    hist = calloc(BUCKETS, sizeof *hist);
    for (int i = 0; i < total; i++)
        streams[i].fd = -1, streams[i].pending_seq = -1;
    ep = epoll_create1(0);
    open_all();

    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    char command[256];
    size_t have = 0;
    for (;;) {
        if (!process_events(200))
            continue;
        ssize_t got = read(0, command + have, sizeof command - 1 - have);
        if (got == 0)
            break; /* EOF: close */
        if (got < 0)
            continue;
        have += got;
        command[have] = 0;
        char *eol;
        int done = 0;
        while ((eol = strchr(command, '\n')) != NULL) {
            *eol = 0;
            int expect;
            double seconds;
            if (sscanf(command, "collect %d %lf", &expect, &seconds) == 2)
                collect(expect, seconds);
            else if (strncmp(command, "close", 5) == 0)
                done = 1;
            size_t rest = have - (eol + 1 - command);
            memmove(command, eol + 1, rest + 1);
            have = rest;
        }
        if (done || have >= sizeof command - 1)
            break;
    }
    for (int i = 0; i < total; i++)
        if (streams[i].fd >= 0)
            close(streams[i].fd);
    return 0;
}
