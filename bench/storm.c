/* A reconnect storm: TOTAL clients open a stream, at most INFLIGHT waiting for an answer.
 *
 * Built by bench/storm.py with gcc at bench time (no Python in the client's loop, so the
 * server and not the client sets the rate). One epoll set: a client connects, sends its
 * GET when the connect completes, and counts as answered when the first bytes it waits
 * for arrive ("head": the end of the response head; "body": a byte after it, which is
 * when our gateway's stream is subscribed). An answered stream stays open and unread
 * (its socket is dropped from the epoll set) until the storm ends; then every socket is
 * closed with RST, so no TIME_WAIT is left behind.
 *
 * usage: storm HOST PORT PATH TOTAL INFLIGHT head|body [HEADER-LINE]
 * stdout, once every client is answered or failed: one JSON line; then it waits for a line
 * (or EOF) on stdin before closing the streams, so the caller measures with them open.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 2048

enum state { CONNECTING, WAITING, ANSWERED, FAILED };

struct client {
    int fd;
    enum state state;
    int got;
    double began;
    char head[HEAD_MAX];
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s HOST PORT PATH TOTAL INFLIGHT head|body [HEADER]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *path = argv[3];
    int port = atoi(argv[2]), total = atoi(argv[4]), inflight = atoi(argv[5]);
    int want_body = strcmp(argv[6], "body") == 0;
    char request[4096];
    int request_len = snprintf(request, sizeof request,
                               "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
                               "%s%s\r\n",
                               path, host, port, argc > 7 ? argv[7] : "", argc > 7 ? "\r\n" : "");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &addr.sin_addr);

    struct client *clients = calloc(total, sizeof *clients);
    double *waits = calloc(total, sizeof *waits);
    int ep = epoll_create1(0);
    int started = 0, waiting = 0, answered = 0, failed = 0, statuses_bad = 0;
    char first_error[256] = "";
    double t0 = now(), last_answer = t0;
    struct epoll_event events[512];

    while (answered + failed < total) {
        while (waiting < inflight && started < total) {
            struct client *c = &clients[started];
            c->began = now();
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (c->fd < 0) {
                snprintf(first_error, sizeof first_error, "socket: %s", strerror(errno));
                c->state = FAILED, failed++, started++;
                continue;
            }
            struct linger lg = {1, 0}; /* close() sends RST */
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            int rc = connect(c->fd, (struct sockaddr *)&addr, sizeof addr);
            if (rc < 0 && errno != EINPROGRESS) {
                if (!first_error[0])
                    snprintf(first_error, sizeof first_error, "connect: %s", strerror(errno));
                close(c->fd);
                c->state = FAILED, failed++, started++;
                continue;
            }
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = started};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            c->state = CONNECTING;
            started++, waiting++;
        }
        int n = epoll_wait(ep, events, 512, 1000);
        if (n == 0 && now() - last_answer > 30.0) {
            snprintf(first_error, sizeof first_error, "no answer for 30 s");
            break;
        }
        for (int i = 0; i < n; i++) {
            struct client *c = &clients[events[i].data.u32];
            if (c->state == CONNECTING && (events[i].events & EPOLLOUT)) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err || write(c->fd, request, request_len) != request_len) {
                    if (!first_error[0])
                        snprintf(first_error, sizeof first_error, "connect/send: %s",
                                 strerror(err ? err : errno));
                    goto fail;
                }
                c->state = WAITING;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = events[i].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            if (c->state != WAITING)
                continue;
            ssize_t got = read(c->fd, c->head + c->got, HEAD_MAX - 1 - c->got);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN)
                    continue;
                if (!first_error[0])
                    snprintf(first_error, sizeof first_error, "closed before the answer");
                goto fail;
            }
            c->got += got;
            c->head[c->got] = 0;
            char *end = strstr(c->head, "\r\n\r\n");
            if (end == NULL) {
                if (c->got >= HEAD_MAX - 1)
                    goto fail;
                continue;
            }
            if (strncmp(c->head + 9, "200", 3) != 0) {
                if (!statuses_bad++)
                    snprintf(first_error, sizeof first_error, "status %.3s", c->head + 9);
                goto fail;
            }
            if (want_body && end + 4 >= c->head + c->got)
                continue; /* the head alone: the stream is not subscribed yet */
            last_answer = now();
            waits[answered++] = last_answer - c->began;
            c->state = ANSWERED, waiting--;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            continue;
        fail:
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->state = FAILED, failed++, waiting--;
        }
    }
    double seconds = last_answer - t0;
    qsort(waits, answered, sizeof *waits, cmp_double);
    double p50 = answered ? waits[answered / 2] : 0, p99 = answered ? waits[answered * 99 / 100] : 0;
    printf("{\"clients\": %d, \"answered\": %d, \"failed\": %d, \"seconds\": %.4f, "
           "\"new_streams_per_s\": %.1f, \"answer_ms\": {\"p50\": %.2f, \"p99\": %.2f, "
           "\"max\": %.2f}, \"first_error\": \"%s\"}\n",
           total, answered, failed, seconds, seconds > 0 ? answered / seconds : 0.0, p50 * 1e3,
           p99 * 1e3, answered ? waits[answered - 1] * 1e3 : 0.0, first_error);
    fflush(stdout);
    char line[16];
    if (fgets(line, sizeof line, stdin) == NULL) {
        /* EOF: close as well */
    }
    for (int i = 0; i < started; i++)
        if (clients[i].state == ANSWERED || clients[i].state == WAITING ||
            clients[i].state == CONNECTING)
            close(clients[i].fd);
    return 0;
}
