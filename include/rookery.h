/*
 * rookery.h - C API of rookery, a single-threaded WebSocket (RFC 6455)
 * server for small embedded Linux boards.
 *
 * Link a program against the static library built by `cargo build --release`:
 *
 *     cc app.c -Iinclude target/release/librookery.a -lpthread -ldl -lm
 *
 * or install it with `scripts/install-c PREFIX` and let pkg-config say how:
 *
 *     cc app.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs --static rookery)
 *
 * (docs/c-api.md lists the full set of system libraries rustc reports.)
 *
 * C99. Hand-written: it must declare every rk_ symbol librookery.a exports
 * (checked by tests/ffi.rs and .ci/c-test).
 *
 * LIFECYCLE
 *   rk_server_new          binds and listens at once (rk_server_port works)
 *   rk_server_set_path     \
 *   rk_server_set_option    } only before the server first runs
 *   rk_server_set_callbacks   (any time)
 *   rk_server_run          serves until rk_server_stop, then returns
 *     or rk_server_run_once in your own loop, until it returns 0
 *   rk_server_free
 *
 * THREADING
 *   One thread at a time uses a server: the one that runs it. Callbacks run
 *   on that thread, inside rk_server_run / rk_server_run_once (or, for the
 *   on_close they cause, inside an rk_send / rk_broadcast / rk_close /
 *   rk_kill call made outside a callback). From a callback you may call rk_send, rk_broadcast,
 *   rk_close, rk_kill, rk_server_stop and rk_server_set_callbacks on the same
 *   server; rk_server_run / rk_server_run_once return RK_EBUSY there, and
 *   rk_server_free is ignored there. Callbacks never nest: an on_close
 *   caused inside a callback is delivered after that callback returns.
 *   rk_server_stop is the exception to the one-thread rule: it is safe from
 *   any thread and from a signal handler. rk_server_free must not run while
 *   another thread or a signal handler may call rk_server_stop.
 *
 * SIGNALS
 *   The library never raises SIGPIPE: it writes to sockets with sendmsg(2)
 *   and MSG_NOSIGNAL, so a write to a connection the peer has reset fails
 *   with EPIPE and that connection is dropped. A program need not ignore
 *   SIGPIPE for the library's sake (only for its own writes to sockets and
 *   pipes). The library does not change any signal disposition itself.
 *
 * ERRORS
 *   Functions returning int return RK_OK (0) or more on success and a
 *   negative RK_E* code on failure; rk_strerror describes a code. A NULL
 *   pointer argument is an error (RK_EINVAL), never a crash, except where a
 *   function says NULL means something. No Rust panic ever crosses into C:
 *   it is caught, logged, and returned as RK_EPANIC.
 *
 * LOGGING
 *   The first rk_server_new installs a logger on stderr filtered by the
 *   RUST_LOG environment variable (unset: errors only; RUST_LOG=debug for
 *   everything).
 */
#ifndef ROOKERY_H
#define ROOKERY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- error codes ---------------------------------------------------------- */

/* Error codes: 0 is success; every error is negative. */
enum rk_error {
    /* Success. */
    RK_OK = 0,
    /* Invalid argument: a NULL pointer, an unknown option, a value out of
     * range, a path not starting with '/'. */
    RK_EINVAL = -1,
    /* No such connection, or it is no longer open for messages (closing,
     * closed, or a stale id). Also: any connection call before the server
     * first runs. */
    RK_ENOTOPEN = -2,
    /* Not possible in this state: rk_server_set_path / rk_server_set_option
     * after the server started, rk_server_run / rk_server_run_once from one
     * of its own callbacks. */
    RK_EBUSY = -3,
    /* An operating-system error while running (the poller failed). */
    RK_EIO = -4,
    /* A panic inside the library was caught (a bug: please report it). If it
     * happened while the server ran, the server is gone (every connection
     * dropped) and every later call that needs it returns RK_EPANIC: free
     * it. */
    RK_EPANIC = -5,
    /* rk_server_new: the address is malformed, cannot be resolved, or cannot
     * be bound (in use, no permission). */
    RK_EADDR = -6,
    /* A text message, close reason, path or address that is not valid
     * UTF-8. */
    RK_EUTF8 = -7,
    /* A close code that may not be sent (RFC 6455 section 7.4). Allowed:
     * 1000-1003, 1007-1011, 3000-4999. */
    RK_ECODE = -8
};

/* A static, NUL-terminated English description of an error code; "unknown
 * error" for any other value. Never NULL. */
const char *rk_strerror(int err);

/* ---- options -------------------------------------------------------------- */

/* Limits and timers, for rk_server_set_option. The defaults are those of the
 * rookery command-line server. A _MS option takes milliseconds, at most
 * UINT32_MAX; a size takes bytes. */
typedef enum rk_option {
    /* A ping to every open connection this often (default 5000; 0 = off). */
    RK_OPT_PING_INTERVAL_MS = 1,
    /* An open connection silent this long is closed with 1001 (default
     * 15000; 0 = off). Any frame from the peer, pongs included, counts. */
    RK_OPT_IDLE_TIMEOUT_MS = 2,
    /* A connection that has not completed its HTTP handshake this long after
     * connecting is dropped (default 5000; 0 = off). */
    RK_OPT_HANDSHAKE_TIMEOUT_MS = 3,
    /* How long a closing connection waits for the peer's close frame, and how
     * long the shutdown after rk_server_stop waits in all (default 5000; 0
     * means 1 s for a single connection). */
    RK_OPT_CLOSE_TIMEOUT_MS = 4,
    /* The largest message accepted (default 1048576; at least 1). Bigger
     * ones are refused with close code 1009 before their payload is read. */
    RK_OPT_MAX_MESSAGE = 5,
    /* The most bytes queued for one slow connection before it is closed with
     * 1008 (default 1048576; at least 1). */
    RK_OPT_MAX_BACKLOG = 6,
    /* The most connections at once, handshakes included; more are answered
     * 503 (default 1024; at least 1). */
    RK_OPT_MAX_CONNECTIONS = 7,
    /* Not an option: keeps the enum as wide as int (-fshort-enums). */
    RK_OPT_FORCE_INT_ = 0x7fffffff
} rk_option;

/* ---- the server ----------------------------------------------------------- */

/* A server: opaque, made by rk_server_new, freed by rk_server_free. */
typedef struct rk_server rk_server;

/* Event callbacks; any member may be NULL. `user` is the pointer given to
 * rk_server_set_callbacks. A connection is a uint64_t id, never 0, unique
 * while the connection lives; after on_close it matches nothing. Callbacks
 * must return normally (no longjmp out, no C++ exception). */
typedef struct rk_callbacks {
    /* A connection completed the WebSocket handshake and is open: you may
     * send to it now. Called once per connection. */
    void (*on_open)(rk_server *s, uint64_t conn, void *user);
    /* A complete, valid message arrived. is_text: 1 for text (then data is
     * valid UTF-8, not NUL-terminated), 0 for binary. data is valid only
     * during the call (and may be NULL when len is 0). */
    void (*on_message)(rk_server *s, uint64_t conn, const uint8_t *data,
                       size_t len, int is_text, void *user);
    /* An open connection is closed. code: the close frame's code that ended
     * it (the peer's if it closed first, 1005 if its frame had none), or 1006
     * if the TCP connection ended without a closing handshake (rk_kill,
     * timeouts, resets). Called exactly once for every connection on_open
     * was called for (unless rk_server_free drops it first); sending to
     * conn from here gives RK_ENOTOPEN. */
    void (*on_close)(rk_server *s, uint64_t conn, uint16_t code, void *user);
} rk_callbacks;

/* Binds to listen_addr ("IP:PORT" or "HOST:PORT"; "127.0.0.1:0" picks a free
 * port) and listens. Returns the server, or NULL on error. If err is not
 * NULL, *err is set to RK_OK or to the error: RK_EINVAL (listen_addr NULL),
 * RK_EUTF8, RK_EADDR. The server is configurable until it first runs. */
rk_server *rk_server_new(const char *listen_addr, int *err);

/* Sets the HTTP path WebSocket upgrades are accepted on (default "/chat");
 * it must start with '/'. Requests for other paths get 404. Copied. Returns
 * RK_OK, RK_EINVAL, RK_EUTF8, or RK_EBUSY once the server has started. */
int rk_server_set_path(rk_server *s, const char *path);

/* Sets a limit or timer (see rk_option). Returns RK_OK, RK_EINVAL (NULL
 * server, unknown option, value out of range), or RK_EBUSY once the server
 * has started. */
int rk_server_set_option(rk_server *s, rk_option opt, uint64_t value);

/* Sets the callbacks (the struct is copied; cb must not be NULL) and the
 * user pointer passed to them. Allowed at any time, from a callback too; the
 * next event uses the new ones. Returns RK_OK or RK_EINVAL. */
int rk_server_set_callbacks(rk_server *s, const rk_callbacks *cb, void *user);

/* The TCP port the server listens on (useful after binding port 0); 0 if s
 * is NULL. */
uint16_t rk_server_port(const rk_server *s);

/* Serves until rk_server_stop is called, then stops accepting, closes every
 * connection with 1001, waits for their close frames (at most
 * RK_OPT_CLOSE_TIMEOUT_MS), and returns RK_OK. A stopped server cannot be
 * restarted: running it again returns RK_OK at once. Errors: RK_EINVAL,
 * RK_EBUSY (called from a callback), RK_EIO, RK_EPANIC. */
int rk_server_run(rk_server *s);

/* One turn of the loop, for programs with their own: waits at most
 * timeout_ms for network events or timers (negative: until something
 * happens; 0: no waiting), handles them, and returns 1 while the server runs
 * or 0 once it has stopped (after rk_server_stop and the graceful close).
 * Errors as for rk_server_run. Timers (pings, timeouts) fire only while you
 * call it. */
int rk_server_run_once(rk_server *s, int timeout_ms);

/* Asks the server to stop: rk_server_run then closes every connection
 * gracefully and returns. Only sets a flag and wakes the loop, so it is safe
 * from a signal handler, from another thread, and from a callback. Before the
 * server first runs, it makes that run stop at once. NULL is ignored. */
void rk_server_stop(rk_server *s);

/* Sends one message to connection conn: text if is_text is non-zero (then
 * data must be valid UTF-8), else binary. data may be NULL when len is 0.
 * The bytes are copied or written before it returns. Returns RK_OK,
 * RK_EINVAL, RK_EUTF8, or RK_ENOTOPEN (unknown, closing or closed
 * connection). */
int rk_send(rk_server *s, uint64_t conn, const uint8_t *data, size_t len,
            int is_text);

/* Sends one message to every open connection (the sender too, when called
 * from on_message), encoding it once. Returns how many connections it was
 * given to (0 or more), or RK_EINVAL, RK_EUTF8. */
int rk_broadcast(rk_server *s, const uint8_t *data, size_t len, int is_text);

/* Closes conn gracefully: sends a close frame with code and reason (NULL:
 * no reason; longer than 123 bytes: cut at a character boundary) and waits
 * for the peer's, at most RK_OPT_CLOSE_TIMEOUT_MS; on_close follows.
 * Returns RK_OK, RK_ECODE, RK_EUTF8, RK_EINVAL or RK_ENOTOPEN. */
int rk_close(rk_server *s, uint64_t conn, uint16_t code, const char *reason);

/* Drops conn's TCP connection at once, with no closing handshake; on_close
 * follows with 1006 if it was open. Returns RK_OK, RK_EINVAL or RK_ENOTOPEN
 * (no such connection). */
int rk_kill(rk_server *s, uint64_t conn);

/* Frees the server and everything it holds. Connections still open are
 * dropped at once, without close frames and without on_close: to close them
 * gracefully, call rk_server_stop and let rk_server_run return first. NULL is
 * ignored; a call from inside a callback is ignored (and logged). Must not
 * race with rk_server_stop (e.g. clear the pointer your signal handler uses
 * before freeing). */
void rk_server_free(rk_server *s);

/* ---- Topics (SPEC section 8) -------------------------------------------
 *
 * A connection may subscribe to any number of topics (any UTF-8 name; a
 * topic exists while it has subscribers). rk_publish encodes a message once
 * and gives it to the topic's subscribers only, at a cost that depends on
 * that topic alone. Every connection receives what it is sent (rk_send,
 * rk_broadcast, rk_publish) in the order the calls were made. A closed
 * connection leaves all its topics. Like rk_send, these may be called from
 * callbacks. */

/* Subscribes conn to topic. Returns 1 (subscribed now), 0 (already was),
 * or RK_EINVAL (NULL s or topic), RK_EUTF8 (topic not UTF-8), RK_ENOTOPEN
 * (no such connection). */
int rk_subscribe(rk_server *s, uint64_t conn, const char *topic);

/* Unsubscribes conn from topic. Returns 1 (was subscribed), 0 (was not), or
 * RK_EINVAL, RK_EUTF8, RK_ENOTOPEN. */
int rk_unsubscribe(rk_server *s, uint64_t conn, const char *topic);

/* Sends one message (text if is_text is non-zero, then valid UTF-8) to the
 * subscribers of topic, encoding it once. data may be NULL when len is 0.
 * Returns how many connections it was given to (0 or more), or RK_EINVAL,
 * RK_EUTF8. */
int rk_publish(rk_server *s, const char *topic, const uint8_t *data,
               size_t len, int is_text);

#ifdef __cplusplus
}
#endif

#endif /* ROOKERY_H */
