/*
 * chat.c - the classic Restbed WebSocket chat example, in C against rookery.
 *
 *   - every client that connects to ws://HOST:PORT/chat is sent
 *     "Welcome to Rookery Chat!", then joins the chat;
 *   - every text message is broadcast to every client, the sender included;
 *   - a binary message gets the connection closed with 1003 (unsupported
 *     data);
 *   - the server pings every client every 5 s (RK_OPT_PING_INTERVAL_MS);
 *   - SIGINT or SIGTERM closes every connection with 1001 and exits 0.
 *
 * Usage: chat [LISTEN_ADDR]      (default 127.0.0.1:1984; port 0 = any)
 * It prints "listening on HOST:PORT" on stdout once it is listening.
 *
 * Build (from the repository root):
 *   make -C examples/c
 * or, after `cargo build --release`,
 *   cc -std=c99 -O2 examples/c/chat.c -Iinclude target/release/librookery.a \
 *      -lpthread -ldl -lm -o chat
 * or, after `scripts/install-c PREFIX`,
 *   cc -std=c99 -O2 examples/c/chat.c -o chat \
 *      $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs --static rookery)
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "rookery.h"

static const char WELCOME[] = "Welcome to Rookery Chat!";

/* The server the signal handler stops; NULL before it exists and after it
 * is freed (rk_server_stop ignores NULL). */
static rk_server *volatile g_server = NULL;

static void on_signal(int signo)
{
    (void)signo;
    rk_server_stop(g_server); /* async-signal-safe */
}

/* A connection id as the library's own log lines write it, "#SLOT.GEN":
 * the low 32 bits are the slot, the high 32 bits the slot's generation
 * (docs/c-api.md). As one number, every id would read 4294967296 or more. */
#define CONN_FMT "#%lu.%lu"
#define CONN_ARGS(c) (unsigned long)((c) & 0xffffffffu), (unsigned long)((c) >> 32)

static void on_open(rk_server *s, uint64_t conn, void *user)
{
    (void)user;
    /* The welcome goes first; only then can a broadcast reach conn, since
     * broadcasts happen on this same thread, in other callbacks. */
    int rc = rk_send(s, conn, (const uint8_t *)WELCOME, sizeof WELCOME - 1, 1);
    if (rc < 0)
        fprintf(stderr, "cannot welcome " CONN_FMT ": %s\n", CONN_ARGS(conn),
                rk_strerror(rc));
    fprintf(stderr, "Opened connection to " CONN_FMT "\n", CONN_ARGS(conn));
}

static void on_message(rk_server *s, uint64_t conn, const uint8_t *data,
                       size_t len, int is_text, void *user)
{
    (void)user;
    if (!is_text) {
        /* 1003: unsupported data. on_close follows once the client answers. */
        rk_close(s, conn, 1003, "binary messages are not supported");
        return;
    }
    fprintf(stderr, "Received message '%.*s' from " CONN_FMT "\n", (int)len,
            (const char *)data, CONN_ARGS(conn));
    int sent = rk_broadcast(s, data, len, 1);
    if (sent < 0)
        fprintf(stderr, "broadcast failed: %s\n", rk_strerror(sent));
}

static void on_close(rk_server *s, uint64_t conn, uint16_t code, void *user)
{
    (void)s;
    (void)user;
    fprintf(stderr, "Closed connection to " CONN_FMT " (code %u)\n",
            CONN_ARGS(conn), (unsigned)code);
}

/* Prints "listening on HOST:PORT", HOST taken from the address given. */
static void print_listening(const char *addr, uint16_t port)
{
    const char *colon = strrchr(addr, ':');
    int host_len = colon ? (int)(colon - addr) : (int)strlen(addr);
    printf("listening on %.*s:%u\n", host_len, addr, (unsigned)port);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    /* chat [ADDR] [--tls CERT KEY]: with --tls, https and wss (a library
     * built with the tls feature; see docs/c-api.md). */
    const char *addr = "127.0.0.1:1984";
    const char *cert = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tls") == 0 && i + 2 < argc) {
            cert = argv[++i];
            key = argv[++i];
        } else if (argv[i][0] != '-') {
            addr = argv[i];
        } else {
            fprintf(stderr, "usage: %s [ADDR] [--tls CERT KEY]\n", argv[0]);
            return 2;
        }
    }
    int err = RK_OK;

    rk_server *s = rk_server_new(addr, &err);
    if (s == NULL) {
        fprintf(stderr, "chat: cannot listen on %s: %s\n", addr, rk_strerror(err));
        return 1;
    }

    /* Designated: the members appended later (on_upgrade, ...) stay NULL,
     * and -Wextra does not warn about them. */
    const rk_callbacks callbacks = {
        .on_open = on_open, .on_message = on_message, .on_close = on_close
    };
    if ((err = rk_server_set_callbacks(s, &callbacks, NULL)) != RK_OK ||
        (err = rk_server_set_path(s, "/chat")) != RK_OK ||
        (err = rk_server_set_option(s, RK_OPT_PING_INTERVAL_MS, 5000)) != RK_OK ||
        (cert != NULL && (err = rk_server_set_tls(s, cert, key)) != RK_OK)) {
        fprintf(stderr, "chat: setup failed: %s\n", rk_strerror(err));
        rk_server_free(s);
        return 1;
    }

    /* No need to ignore SIGPIPE: the library sends with MSG_NOSIGNAL, so a
     * peer that resets its connection cannot raise it. */
    g_server = s;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);

    print_listening(addr, rk_server_port(s));
    err = rk_server_run(s); /* until SIGINT / SIGTERM */

    g_server = NULL; /* no signal may reach a freed server */
    rk_server_free(s);
    if (err != RK_OK) {
        fprintf(stderr, "chat: %s\n", rk_strerror(err));
        return 1;
    }
    fprintf(stderr, "chat: stopped\n");
    return 0;
}
