//! Running the server inside a C program's own event loop: the descriptor
//! to wait on (`rk_server_fd`) and how long to wait (`rk_server_timeout_ms`).

use super::*;

// ---- your own event loop ---------------------------------------------------------------

/// The descriptor to poll for readability (the server's epoll descriptor):
/// when it is readable, or after [`rk_server_timeout_ms`], call
/// `rk_server_run_once(s, 0)`. Builds the server if it has not run yet (the
/// options are fixed from then on). Do not read, write or close it. Returns
/// the descriptor (≥ 0), or [`RK_EINVAL`], [`RK_EIO`], [`RK_EPANIC`].
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
pub unsafe extern "C" fn rk_server_fd(s: *const rk_server) -> c_int {
    guard_int("rk_server_fd", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        // The handle is only ever used through shared references, so the
        // `*mut` the handler keeps is no licence to mutate through it.
        ensure_built(s.cast_mut(), h)?;
        if let State::Broken(code) = h.state.get() {
            return Err(code);
        }
        Ok(h.fd.get())
    })
}

/// How long a program's own loop may wait on [`rk_server_fd`] before it
/// must call `rk_server_run_once(s, 0)` for the server's timers, in ms
/// (rounded up): -1 when no timer is pending, 0 to call it at once (also
/// from a callback, or once the server broke). Builds the server if it has
/// not run yet. NULL `s`: -1 ([`RK_EINVAL`]).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
pub unsafe extern "C" fn rk_server_timeout_ms(s: *const rk_server) -> c_int {
    guard_int("rk_server_timeout_ms", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        if ensure_built(s.cast_mut(), h).is_err() || h.state.get() != State::Ready {
            return Ok(0);
        }
        let server = h.server.take();
        let timeout = server.as_ref().map(|server| server.next_timeout());
        h.server.set(server);
        Ok(match timeout {
            None => 0,
            Some(None) => -1,
            Some(Some(t)) => c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(c_int::MAX),
        })
    })
}
