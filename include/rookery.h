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
 *   rk_server_set_tls      /
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
 *   any thread and from a signal handler. rk_post is safe from any thread
 *   (not from a signal handler). rk_server_free must not run while another
 *   thread or a signal handler may call rk_server_stop or rk_post.
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
 *   everything). rk_set_log sends the lines to a function of yours instead
 *   (syslog, a file, a ring buffer); from then on nothing goes to stderr.
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
    RK_ECODE = -8,
    /* Try again later: rk_post found RK_OPT_MAX_POSTED bytes already
     * waiting for the loop. */
    RK_EAGAIN = -9,
    /* Not supported by this build (a cargo feature such as tls or deflate
     * was left out). */
    RK_ENOTSUP = -10,
    /* A TLS certificate or key that cannot be read or used. */
    RK_ETLS = -11,
    /* No such thing: rk_cancel_timer with a timer that fired, was cancelled
     * or never existed. */
    RK_ENOTFOUND = -12
};

/* A static, NUL-terminated English description of an error code; "unknown
 * error" for any other value. Never NULL. */
const char *rk_strerror(int err);

/* ---- logging -------------------------------------------------------------- */

/* Log levels, for rk_set_log. */
enum rk_log_level {
    RK_LOG_ERROR = 1,
    RK_LOG_WARN = 2,
    RK_LOG_INFO = 3,
    RK_LOG_DEBUG = 4,
    RK_LOG_TRACE = 5
};

/* Receives one log line: level 1 (RK_LOG_ERROR) to 5 (RK_LOG_TRACE), line
 * NUL-terminated, without a newline, control characters escaped (\n, \x1b),
 * valid during the call only; user as given to rk_set_log. */
typedef void (*rk_log_fn)(int level, const char *line, void *user);

/* Routes the library's log lines up to max_level (RK_LOG_ERROR ..
 * RK_LOG_TRACE; 0: none) to fn; from then on nothing is written to stderr,
 * whatever RUST_LOG says. fn NULL drops every line. Call it before
 * rk_server_new to miss nothing; call it again to change fn, user or the
 * level (not from inside fn). THREADING: fn runs on the thread that logs
 * (the loop's, or one inside rk_post), one call at a time; a line logged
 * by an rk_ call made from inside fn is dropped. */
void rk_set_log(rk_log_fn fn, void *user, int max_level);

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
    /* The most bytes rk_post may hold waiting for the loop: payloads plus
     * 40 bytes per message (default 1048576; at least 1). A message bigger
     * than this is accepted when nothing waits. */
    RK_OPT_MAX_POSTED = 8,
    /* Take clients' permessage-deflate offers (RFC 7692): 0 (default) or 1.
     * Each message is compressed on its own, with one compressor for the
     * whole server, so a connection costs no more memory with it. Returns
     * RK_ENOTSUP when librookery.a was built without it (build it with
     * --features deflate). */
    RK_OPT_DEFLATE = 9,
    /* The most connections at once from one IP address, handshakes included
     * (an IPv6 address counts whole); more are answered 503 (default 0 =
     * no limit). */
    RK_OPT_MAX_CONNECTIONS_PER_IP = 10,
    /* The most messages a second an open connection may send; past it (and
     * its burst) the connection is closed with 1008 (default 0 = no limit).
     * Setting it sets the burst to the same number. */
    RK_OPT_RATE_LIMIT = 11,
    /* The burst of RK_OPT_RATE_LIMIT, in messages: set it after that option
     * (RK_EINVAL while there is no rate limit; at least 1). */
    RK_OPT_RATE_LIMIT_BURST = 12,
    /* The most payload bytes a second an open connection may send, a
     * compressed message counted inflated; past it (and its burst) the
     * connection is closed with 1008 (default 0 = no limit). Setting it
     * sets the burst to the same number. */
    RK_OPT_RATE_LIMIT_BYTES = 13,
    /* The burst of RK_OPT_RATE_LIMIT_BYTES, in bytes, which is also the
     * largest message that passes: set it after that option (RK_EINVAL
     * while there is no byte rate limit; at least 1). */
    RK_OPT_RATE_LIMIT_BYTES_BURST = 14,
    /* How the loop moves bytes: an rk_io (default RK_IO_AUTO). RK_IO_URING
     * returns RK_ENOTSUP when librookery.a was built without io_uring
     * (build it with --features uring); where the kernel refuses io_uring,
     * the first run fails with RK_EIO and the reason is logged.
     * rk_server_fd works with either. After rk_server_free of a server on
     * io_uring, a blocking call with a timeout on a thread that ran it may
     * fail once with EINTR (the kernel's teardown of the ring): retry it. */
    RK_OPT_IO = 15,
    /* Not an option: keeps the enum as wide as int (-fshort-enums). */
    RK_OPT_FORCE_INT_ = 0x7fffffff
} rk_option;

/* Values of RK_OPT_IO. */
typedef enum rk_io {
    /* io_uring where it is built in and the kernel allows it (Linux 6.0+),
     * else epoll; the log says which, and why. */
    RK_IO_AUTO = 0,
    RK_IO_EPOLL = 1,
    RK_IO_URING = 2
} rk_io;

/* ---- the server ----------------------------------------------------------- */

/* A server: opaque, made by rk_server_new, freed by rk_server_free. */
typedef struct rk_server rk_server;

/* The HTTP request seen by on_upgrade and on_http (opaque; see the
 * rk_request_ functions). Valid during that callback only. */
typedef struct rk_request rk_request;

/* The answer on_http fills in (opaque; see the rk_response_ functions).
 * Valid during that callback only. */
typedef struct rk_response rk_response;

/* What on_upgrade returns, besides an HTTP status 400..599 to refuse with. */
enum rk_upgrade {
    /* Accept: the connection opens (on_open) when on_upgrade returns. */
    RK_UPGRADE_ACCEPT = 0,
    /* Accept, but read no frame and call no on_open until rk_activate. */
    RK_UPGRADE_DELAYED = 1
};

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
    /* The members below were added later, at the end, so that
     * `rk_callbacks cb = {0};` keeps working. */
    /* A valid upgrade request reached the WebSocket path (method, version,
     * key and Host already checked). req is valid during the call only.
     * Return RK_UPGRADE_ACCEPT, RK_UPGRADE_DELAYED, or an HTTP status
     * 400..599 to refuse with (any other value: 500, logged). Inside it you
     * may call rk_accept_protocol, rk_conn_set_user, rk_conn_peer and the
     * other connection calls for conn. NULL: accept every upgrade. */
    int (*on_upgrade)(rk_server *s, uint64_t conn, const rk_request *req,
                      void *user);
    /* A plain HTTP request (anything but an upgrade on the WebSocket path).
     * Fill res with rk_response_status / _header / _body; it starts as
     * 404 Not Found. The connection is closed after the answer. Calls that
     * act on connections or timers return RK_EBUSY from here (rk_post
     * works). NULL: every such request gets 404. */
    void (*on_http)(rk_server *s, const rk_request *req, rk_response *res,
                    void *user);
    /* A timer set with rk_set_timer fired (once); token is the one given
     * there. */
    void (*on_timer)(rk_server *s, uint64_t token, void *user);
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

/* Makes the listener speak TLS 1.2 and 1.3 (the page over https, WebSockets
 * over wss, on the same port) with the PEM certificate (a chain, leaf
 * first) and private key (PKCS#8, PKCS#1 or SEC1) in these files, read now.
 * Only before the server first runs. Returns RK_OK, RK_ETLS (a file is
 * missing or unusable, or the key is not the certificate's; the reason is
 * logged), RK_ENOTSUP (librookery.a built without TLS: build it with
 * `cargo build --release -p rookery-capi --features tls`), RK_EINVAL (NULL
 * argument), RK_EUTF8, or RK_EBUSY once the server has started. */
int rk_server_set_tls(rk_server *s, const char *cert_pem_file, const char *key_pem_file);

/* Sets the callbacks (the struct is copied; cb must not be NULL) and the
 * user pointer passed to them. Allowed at any time, from a callback too; the
 * next event uses the new ones. Returns RK_OK or RK_EINVAL.
 *
 * rk_callbacks grows at its end as the API grows, so the macro below passes
 * the program's sizeof(rk_callbacks) to rk_server_set_callbacks_sized: a
 * program built against an older header (a shorter struct) runs against a
 * newer library, which takes the members past its size as NULL. The
 * function of this name reads the six members above (on_open .. on_timer),
 * for programs built before the macro; its address, &rk_server_set_callbacks,
 * is that function. */
int rk_server_set_callbacks(rk_server *s, const rk_callbacks *cb, void *user);

/* As rk_server_set_callbacks, with cb pointing to size bytes: the first
 * members of rk_callbacks (size a multiple of a pointer's size, else
 * RK_EINVAL). Members beyond size are NULL. A struct longer than this
 * library's (a newer header) is taken if the members it does not know are
 * NULL, else refused with RK_ENOTSUP. */
int rk_server_set_callbacks_sized(rk_server *s, const rk_callbacks *cb, size_t size,
                                  void *user);

#define rk_server_set_callbacks(s, cb, user) \
    rk_server_set_callbacks_sized((s), (cb), sizeof(rk_callbacks), (user))

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

/* ---- from other threads: posts ------------------------------------------- */

/* Queues a copy of a message (text if is_text is non-zero, then valid
 * UTF-8) for connection conn, or for every connection open when the loop
 * sends it if conn is 0, and wakes the loop; the loop sends posts in the
 * order they were made (so, per thread, in the order that thread made
 * them). THREADING: callable from any thread, the loop's too, at any time
 * (it takes a mutex and allocates, so not from a signal handler); it must
 * not race with rk_server_free (join your threads first). data may be NULL
 * when len is 0; it is copied before the call returns. Returns RK_OK,
 * RK_EINVAL, RK_EUTF8, RK_EAGAIN (RK_OPT_MAX_POSTED bytes already wait:
 * retry later), or RK_ENOTOPEN (the server has not been built yet - see
 * rk_server_fd - or is stopping or stopped; nothing was queued). A post
 * accepted before rk_server_stop is still sent, before the close frames;
 * a post for a connection closed by then is dropped. */
int rk_post(rk_server *s, uint64_t conn, const uint8_t *data, size_t len,
            int is_text);

/* ---- timers --------------------------------------------------------------- */

/* Calls on_timer(s, token, user) once, on the loop's thread, ms
 * milliseconds from now (10 ms granularity, never early). Loop thread only
 * (callbacks included, but not on_http). Builds the server if it has not
 * run yet (options are fixed from then on). Returns the timer's id (> 0),
 * or RK_EINVAL, RK_EBUSY (from on_http), RK_EIO, RK_EPANIC. */
int64_t rk_set_timer(rk_server *s, uint32_t ms, uint64_t token);

/* Cancels a timer. Loop thread only. Returns RK_OK, RK_ENOTFOUND (fired,
 * cancelled or never set), RK_EINVAL, RK_EBUSY (from on_http). */
int rk_cancel_timer(rk_server *s, int64_t timer);

/* ---- requests and answers (on_upgrade, on_http) ----------------------------- */

/* Parts of req as NUL-terminated strings, owned by the library and valid
 * until the callback that got req returns. NULL if req is NULL. */
const char *rk_request_method(const rk_request *req);  /* "GET" */
const char *rk_request_path(const rk_request *req);    /* without the query */
const char *rk_request_query(const rk_request *req);   /* after '?', "" if none; not decoded */
/* The value of the first header field called name (compared in any case),
 * or NULL if absent (or req or name NULL). */
const char *rk_request_header(const rk_request *req, const char *name);

/* on_http only: the answer's status, 200..599 (default 404). Returns RK_OK
 * or RK_EINVAL. */
int rk_response_status(rk_response *res, int status);
/* on_http only: adds a header field (name and value copied). Content-Type
 * replaces the default one; Content-Length and Connection are the
 * library's; a name that is not an HTTP token or a value with CR or LF is
 * refused. Returns RK_OK, RK_EINVAL, RK_EUTF8. */
int rk_response_header(rk_response *res, const char *name, const char *value);
/* on_http only: the body (copied; body may be NULL when len is 0). Without
 * one, the answer carries a short text naming the status. Returns RK_OK or
 * RK_EINVAL. */
int rk_response_body(rk_response *res, const uint8_t *body, size_t len);

/* Inside on_upgrade for conn only: answer with this subprotocol (copied),
 * which must be one of the client's Sec-WebSocket-Protocol offers. Returns
 * RK_OK, RK_EINVAL (NULL or not offered), RK_EUTF8, or RK_EBUSY (not
 * inside on_upgrade for conn). */
int rk_accept_protocol(rk_server *s, uint64_t conn, const char *protocol);

/* Opens a connection accepted with RK_UPGRADE_DELAYED: on_open follows
 * (after the current callback returns) and its frames are read. Loop
 * thread only. Returns RK_OK, RK_EINVAL, RK_ENOTOPEN (unknown, or not
 * waiting for activation), RK_EBUSY (from on_http). */
int rk_activate(rk_server *s, uint64_t conn);

/* ---- per connection ------------------------------------------------------- */

/* Attaches ptr to conn (NULL detaches); allowed from on_upgrade on, until
 * the connection starts closing. The
 * library never dereferences or frees it: it forgets it when the
 * connection closes (after on_close, which may still read it) or is
 * refused by on_upgrade. Loop thread only. Returns RK_OK, RK_EINVAL,
 * RK_ENOTOPEN (unknown, closing or closed connection), RK_EBUSY (from
 * on_http). */
int rk_conn_set_user(rk_server *s, uint64_t conn, void *ptr);

/* The pointer attached to conn, or NULL if none, unknown conn or NULL s.
 * Loop thread only. */
void *rk_conn_user(const rk_server *s, uint64_t conn);

/* Writes conn's peer address, "IP:PORT" ("[IPv6]:PORT"), NUL-terminated,
 * into buf (64 bytes always suffice). Loop thread only. Returns RK_OK,
 * RK_EINVAL (NULL, or len too small: then buf holds "" if len > 0),
 * RK_ENOTOPEN, RK_EBUSY (from on_http). */
int rk_conn_peer(const rk_server *s, uint64_t conn, char *buf, size_t len);

/* ---- your own event loop ---------------------------------------------------- */

/* The descriptor to watch for readability (the server's epoll descriptor:
 * readable when a socket, a post or rk_server_stop needs the loop). Wait
 * until it is readable or rk_server_timeout_ms has passed, then call
 * rk_server_run_once(s, 0); stop when that returns 0. Do not read, write
 * or close it. Builds the server if it has not run yet (options are fixed
 * from then on; rk_post works from then on). Loop thread only. Returns the
 * descriptor (>= 0), or RK_EINVAL, RK_EIO, RK_EPANIC. */
int rk_server_fd(const rk_server *s);

/* How long your loop may wait on rk_server_fd before calling
 * rk_server_run_once(s, 0) for the server's timers, in ms (rounded up):
 * -1 when no timer is pending, 0 to call it at once (also inside a
 * callback, or when the server cannot be built or broke: the next run
 * reports why). Builds the server if it has not run yet. Loop thread only.
 * NULL s: -1 (RK_EINVAL). */
int rk_server_timeout_ms(const rk_server *s);

/* Frees the server and everything it holds. Connections still open are
 * dropped at once, without close frames and without on_close: to close them
 * gracefully, call rk_server_stop and let rk_server_run return first. NULL is
 * ignored; a call from inside a callback is ignored (and logged). Must not
 * race with rk_server_stop (e.g. clear the pointer your signal handler uses
 * before freeing). */
void rk_server_free(rk_server *s);

/* ---- Topics ------------------------------------------------------------
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
