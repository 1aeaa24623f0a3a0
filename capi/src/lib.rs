//! `librookery.a`: the C API of rookery (`include/rookery.h`).
//!
//! The functions live in the `rookery` crate's `ffi` module (its hidden
//! `ffi` feature) as Rust functions with the C ABI; this crate gives each
//! its C symbol (`#[no_mangle]`, one wrapper a function, which LTO inlines)
//! and links them, with the rest of rookery and the Rust standard library,
//! into one static archive. The symbols are here and not on the functions
//! themselves because `cargo build --release` compiles the `rookery` crate
//! once for the command and this library: a `#[no_mangle]` function is kept
//! through the command's LTO, whether it calls it or not, and changes what
//! is inlined there (the command was 4,648 B larger, stripped, x86_64).
//! `tests/ffi.rs` checks that the wrappers, `src/ffi/` and the header name
//! the same functions.

// Each wrapper's contract (its `# Safety`) is the one of the `rookery::ffi`
// function of the same name, which it calls with the same arguments.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_void};

use rookery_lib::ffi;
pub use rookery_lib::ffi::*;

// src/ffi/connections.rs
#[no_mangle]
pub unsafe extern "C" fn rk_send(
    s: *mut rk_server,
    conn: u64,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_send(s, conn, data, len, is_text) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_broadcast(
    s: *mut rk_server,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_broadcast(s, data, len, is_text) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_close(
    s: *mut rk_server,
    conn: u64,
    code: u16,
    reason: *const c_char,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_close(s, conn, code, reason) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_kill(s: *mut rk_server, conn: u64) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_kill(s, conn) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_conn_set_user(s: *mut rk_server, conn: u64, ptr: *mut c_void) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_conn_set_user(s, conn, ptr) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_conn_user(s: *const rk_server, conn: u64) -> *mut c_void {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_conn_user(s, conn) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_conn_peer(
    s: *const rk_server,
    conn: u64,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_conn_peer(s, conn, buf, len) }
}

// src/ffi/event_loop.rs
#[no_mangle]
pub unsafe extern "C" fn rk_server_fd(s: *const rk_server) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_fd(s) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_timeout_ms(s: *const rk_server) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_timeout_ms(s) }
}

// src/ffi/lifecycle.rs
#[no_mangle]
pub unsafe extern "C" fn rk_server_new(
    listen_addr: *const c_char,
    err: *mut c_int,
) -> *mut rk_server {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_new(listen_addr, err) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_path(s: *mut rk_server, path: *const c_char) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_set_path(s, path) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_tls(
    s: *mut rk_server,
    cert_pem_file: *const c_char,
    key_pem_file: *const c_char,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_set_tls(s, cert_pem_file, key_pem_file) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_option(
    s: *mut rk_server,
    opt: rk_option,
    value: u64,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_set_option(s, opt, value) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_callbacks(
    s: *mut rk_server,
    cb: *const rk_callbacks,
    user: *mut c_void,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_set_callbacks(s, cb, user) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_set_callbacks_sized(
    s: *mut rk_server,
    cb: *const rk_callbacks,
    size: usize,
    user: *mut c_void,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_set_callbacks_sized(s, cb, size, user) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_port(s: *const rk_server) -> u16 {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_port(s) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_run(s: *mut rk_server) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_run(s) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_run_once(s: *mut rk_server, timeout_ms: c_int) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_run_once(s, timeout_ms) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_stop(s: *mut rk_server) {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_stop(s) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_server_free(s: *mut rk_server) {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_server_free(s) }
}
#[no_mangle]
pub extern "C" fn rk_strerror(err: c_int) -> *const c_char {
    ffi::rk_strerror(err)
}

// src/ffi/logging.rs
#[no_mangle]
pub unsafe extern "C" fn rk_set_log(log: rk_log_fn, user: *mut c_void, max_level: c_int) {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_set_log(log, user, max_level) }
}

// src/ffi/posts.rs
#[no_mangle]
pub unsafe extern "C" fn rk_post(
    s: *mut rk_server,
    conn: u64,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_post(s, conn, data, len, is_text) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_set_timer(s: *mut rk_server, ms: u32, token: u64) -> i64 {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_set_timer(s, ms, token) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_cancel_timer(s: *mut rk_server, timer: i64) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_cancel_timer(s, timer) }
}

// src/ffi/requests.rs
#[no_mangle]
pub unsafe extern "C" fn rk_request_method(r: *const rk_request) -> *const c_char {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_request_method(r) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_request_path(r: *const rk_request) -> *const c_char {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_request_path(r) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_request_query(r: *const rk_request) -> *const c_char {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_request_query(r) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_request_header(
    r: *const rk_request,
    name: *const c_char,
) -> *const c_char {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_request_header(r, name) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_response_status(res: *mut rk_response, status: c_int) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_response_status(res, status) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_response_header(
    res: *mut rk_response,
    name: *const c_char,
    value: *const c_char,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_response_header(res, name, value) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_response_body(
    res: *mut rk_response,
    body: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_response_body(res, body, len) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_accept_protocol(
    s: *mut rk_server,
    conn: u64,
    protocol: *const c_char,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_accept_protocol(s, conn, protocol) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_activate(s: *mut rk_server, conn: u64) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_activate(s, conn) }
}

// src/ffi/topics.rs
#[no_mangle]
pub unsafe extern "C" fn rk_subscribe(s: *mut rk_server, conn: u64, topic: *const c_char) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_subscribe(s, conn, topic) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_unsubscribe(
    s: *mut rk_server,
    conn: u64,
    topic: *const c_char,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_unsubscribe(s, conn, topic) }
}
#[no_mangle]
pub unsafe extern "C" fn rk_publish(
    s: *mut rk_server,
    topic: *const c_char,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    // SAFETY: the caller's contract is the one of the function called.
    unsafe { ffi::rk_publish(s, topic, data, len, is_text) }
}
