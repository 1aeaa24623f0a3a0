/*
 * dashboard.c - a sensor dashboard in C against rookery: a worker thread
 * reads a (simulated) sensor every 100 ms and posts the reading to every
 * browser, and the program runs the server from its own poll() loop.
 *
 *   - ws://HOST:PORT/sensors?token=TOKEN streams readings as JSON text,
 *     {"seq":N,"temp_c":T}, one every 100 ms (rk_post from the worker);
 *     an upgrade without the right token is refused with 403 (on_upgrade);
 *   - GET /status answers JSON: {"clients":N,"readings":N,"uptime_s":N}
 *     (on_http); anything else is 404;
 *   - every 10 s a timer prints the same figures on stderr (rk_set_timer);
 *   - each connection keeps its peer address (rk_conn_set_user), logged
 *     when it closes;
 *   - the main loop is poll() on rk_server_fd with rk_server_timeout_ms,
 *     calling rk_server_run_once(s, 0), as a program with other
 *     descriptors to watch would;
 *   - SIGINT or SIGTERM closes every connection with 1001, stops the
 *     worker (its next rk_post returns RK_ENOTOPEN) and exits 0.
 *
 * Usage: dashboard [LISTEN_ADDR [TOKEN]]   (default 127.0.0.1:1985, s3cret)
 * It prints "listening on HOST:PORT" on stdout once it is listening.
 *
 * Build (from the repository root): make -C examples/c dashboard
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rookery.h"

#define PEER_LEN 64

/* The server the signal handler stops; NULL before it exists and after it
 * is freed (rk_server_stop ignores NULL). */
static rk_server *volatile g_server = NULL;

/* The loop thread's state (callbacks only). */
struct app {
    const char *token;
    int clients;
    time_t started;
    /* Readings posted so far: written by the worker, read by on_http and
     * on_timer, hence the mutex. */
    pthread_mutex_t lock;
    unsigned long readings;
    /* Set by main (under the mutex) to end the worker. */
    int quit;
};

/* What each connection keeps (rk_conn_set_user). */
struct conn_data {
    char peer[PEER_LEN];
};

static void on_signal(int signo)
{
    (void)signo;
    rk_server_stop(g_server); /* async-signal-safe */
}

static unsigned long readings(struct app *app)
{
    unsigned long n;
    pthread_mutex_lock(&app->lock);
    n = app->readings;
    pthread_mutex_unlock(&app->lock);
    return n;
}

/* Whether the query string holds token=TOKEN among its &-separated pairs. */
static int has_token(const char *query, const char *token)
{
    size_t len = strlen(token);
    const char *p = query;
    while (p && *p) {
        if (strncmp(p, "token=", 6) == 0 && strncmp(p + 6, token, len) == 0 &&
            (p[6 + len] == '\0' || p[6 + len] == '&'))
            return 1;
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return 0;
}

static int on_upgrade(rk_server *s, uint64_t conn, const rk_request *req, void *user)
{
    struct app *app = user;
    struct conn_data *data;
    if (!has_token(rk_request_query(req), app->token)) {
        fprintf(stderr, "refused %s: no valid token\n", rk_request_path(req));
        return 403;
    }
    data = calloc(1, sizeof *data);
    if (!data)
        return 503;
    if (rk_conn_peer(s, conn, data->peer, sizeof data->peer) != RK_OK)
        strcpy(data->peer, "?");
    rk_conn_set_user(s, conn, data);
    return RK_UPGRADE_ACCEPT;
}

static void on_open(rk_server *s, uint64_t conn, void *user)
{
    struct app *app = user;
    struct conn_data *data = rk_conn_user(s, conn);
    app->clients++;
    printf("dashboard opened for %s\n", data ? data->peer : "?");
    fflush(stdout);
}

static void on_close(rk_server *s, uint64_t conn, uint16_t code, void *user)
{
    struct app *app = user;
    struct conn_data *data = rk_conn_user(s, conn);
    app->clients--;
    printf("dashboard closed for %s (code %u)\n", data ? data->peer : "?", (unsigned)code);
    fflush(stdout);
    free(data); /* the library forgets the pointer after on_close */
}

static void on_message(rk_server *s, uint64_t conn, const uint8_t *data, size_t len,
                       int is_text, void *user)
{
    /* Browsers only listen; ignore what they send. */
    (void)s, (void)conn, (void)data, (void)len, (void)is_text, (void)user;
}

static void on_http(rk_server *s, const rk_request *req, rk_response *res, void *user)
{
    struct app *app = user;
    char body[128];
    int n;
    (void)s;
    if (strcmp(rk_request_path(req), "/status") != 0)
        return; /* stays 404 */
    n = snprintf(body, sizeof body, "{\"clients\":%d,\"readings\":%lu,\"uptime_s\":%ld}",
                 app->clients, readings(app), (long)(time(NULL) - app->started));
    rk_response_status(res, 200);
    rk_response_header(res, "Content-Type", "application/json");
    rk_response_header(res, "Cache-Control", "no-store");
    rk_response_body(res, (const uint8_t *)body, (size_t)n);
}

static void on_timer(rk_server *s, uint64_t token, void *user)
{
    struct app *app = user;
    fprintf(stderr, "stats: clients=%d readings=%lu\n", app->clients, readings(app));
    rk_set_timer(s, 10000, token); /* again in 10 s */
}

/* The worker: one reading every 100 ms, posted to every connection. */
static void *sensor(void *arg)
{
    struct app *app = arg;
    unsigned long seq = 0;
    const struct timespec period = {0, 100 * 1000 * 1000};
    for (;;) {
        char msg[64];
        int n, rc, quit;
        nanosleep(&period, NULL);
        pthread_mutex_lock(&app->lock);
        quit = app->quit;
        pthread_mutex_unlock(&app->lock);
        if (quit)
            break;
        seq++;
        /* A slow saw-tooth between 20.0 and 24.9 degrees. */
        n = snprintf(msg, sizeof msg, "{\"seq\":%lu,\"temp_c\":%lu.%lu}", seq,
                     20 + (seq / 10) % 5, seq % 10);
        rc = rk_post(g_server, 0, (const uint8_t *)msg, (size_t)n, 1);
        if (rc == RK_ENOTOPEN)
            break; /* the server is stopping */
        if (rc == RK_EAGAIN)
            continue; /* the loop is behind: drop this reading */
        if (rc != RK_OK) {
            fprintf(stderr, "rk_post: %s\n", rk_strerror(rc));
            break;
        }
        pthread_mutex_lock(&app->lock);
        app->readings++;
        pthread_mutex_unlock(&app->lock);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:1985";
    struct app app;
    rk_callbacks cb = {0};
    struct sigaction sa;
    pthread_t worker;
    rk_server *s;
    int err, fd, rc = 0;

    memset(&app, 0, sizeof app);
    app.token = argc > 2 ? argv[2] : "s3cret";
    app.started = time(NULL);
    pthread_mutex_init(&app.lock, NULL);

    s = rk_server_new(addr, &err);
    if (!s) {
        fprintf(stderr, "cannot listen on %s: %s\n", addr, rk_strerror(err));
        return 1;
    }
    cb.on_open = on_open;
    cb.on_message = on_message;
    cb.on_close = on_close;
    cb.on_upgrade = on_upgrade;
    cb.on_http = on_http;
    cb.on_timer = on_timer;
    rk_server_set_callbacks(s, &cb, &app);
    rk_server_set_path(s, "/sensors");

    g_server = s;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Builds the server: rk_post works from here on. */
    fd = rk_server_fd(s);
    if (fd < 0) {
        fprintf(stderr, "rk_server_fd: %s\n", rk_strerror(fd));
        return 1;
    }
    rk_set_timer(s, 10000, 1);
    if (pthread_create(&worker, NULL, sensor, &app) != 0) {
        fprintf(stderr, "cannot start the worker\n");
        return 1;
    }
    printf("listening on 127.0.0.1:%u\n", (unsigned)rk_server_port(s));
    fflush(stdout);

    /* The program's own loop: the server's descriptor is one of what it
     * could watch. */
    for (;;) {
        struct pollfd p;
        int n;
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        n = poll(&p, 1, rk_server_timeout_ms(s));
        if (n < 0 && errno != EINTR) {
            perror("poll");
            rc = 1;
            rk_server_stop(s);
        }
        n = rk_server_run_once(s, 0);
        if (n == 0)
            break;
        if (n < 0) {
            fprintf(stderr, "rk_server_run_once: %s\n", rk_strerror(n));
            rc = 1;
            break;
        }
    }

    /* The worker stops at its next turn (its posts already fail with
     * RK_ENOTOPEN after a stop); join it before the free: rk_post must not
     * race with rk_server_free. */
    pthread_mutex_lock(&app.lock);
    app.quit = 1;
    pthread_mutex_unlock(&app.lock);
    pthread_join(worker, NULL);
    g_server = NULL;
    rk_server_free(s);
    pthread_mutex_destroy(&app.lock);
    printf("stopped\n");
    return rc;
}
