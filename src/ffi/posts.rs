//! Messages posted from other threads (`rk_post`) and the loop's timers
//! (`rk_set_timer`, `rk_cancel_timer`).

use super::*;

/// Queues a copy of a message for `conn` (0: every connection open when the
/// loop sends it) and wakes the loop, which sends posts in the order they
/// were made. The one function besides [`rk_server_stop`] that may be
/// called from any thread (not from a signal handler: it locks a mutex and
/// allocates). Returns [`RK_OK`], [`RK_EINVAL`], [`RK_EUTF8`],
/// [`RK_EAGAIN`] (`RK_OPT_MAX_POSTED` bytes already wait: retry later) or
/// [`RK_ENOTOPEN`] (the server has not been built by a first run, or is
/// stopping or stopped). A post to a connection that has closed by the time
/// the loop sends it is dropped.
///
/// # Safety
///
/// `s` is NULL or a live handle that [`rk_server_free`] does not free
/// concurrently; `data` is NULL or points to `len` bytes.
pub unsafe extern "C" fn rk_post(
    s: *mut rk_server,
    conn: u64,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    guard_int("rk_post", || {
        if s.is_null() {
            return Err(RK_EINVAL);
        }
        // SAFETY: per this function's contract.
        let msg = message(unsafe { bytes(data, len) }?, is_text)?;
        // SAFETY: `s` is a live handle (contract). Only a reference to its
        // atomic `poster` field is made, never to the whole struct, as in
        // `rk_server_stop`: the loop thread's `Cell`s are not touched.
        let poster = unsafe { &(*s).poster }.load(Ordering::SeqCst);
        // SAFETY: a non-NULL pointer is the boxed poster, freed only by
        // `rk_server_free`, which does not run concurrently (contract);
        // `Poster` is `Sync`.
        let poster = unsafe { poster.as_ref() }.ok_or(RK_ENOTOPEN)?;
        let conn = (conn != 0).then(|| ConnId::from_u64(conn));
        poster.post(conn, msg).map_err(|e| match e {
            PostError::Full => RK_EAGAIN,
            PostError::Stopped => RK_ENOTOPEN,
        })?;
        Ok(RK_OK)
    })
}

/// Sets a timer: `on_timer(s, token, user)` is called once, on the loop,
/// `ms` milliseconds from now (at 10 ms granularity, never early). Builds
/// the server if it has not run yet (the options are fixed from then on).
/// Returns the timer's id (> 0), or [`RK_EINVAL`], [`RK_EBUSY`] (from
/// `on_http`), [`RK_EIO`], [`RK_EPANIC`].
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
pub unsafe extern "C" fn rk_set_timer(s: *mut rk_server, ms: u32, token: u64) -> i64 {
    guard("rk_set_timer", i64::from(RK_EPANIC), || {
        let set = || {
            // SAFETY: per this function's contract.
            let h = unsafe { handle(s) }?;
            ensure_built(s, h)?;
            let after = Duration::from_millis(u64::from(ms));
            let id = with_context(h, |ctx| ctx.set_timer(after, token))?;
            match i64::try_from(id.0.as_u64()) {
                Ok(id) if id > 0 => Ok(id),
                _ => {
                    // An id C cannot hold (a slot reused 2^31 times).
                    let _ = with_context(h, |ctx| ctx.cancel_timer(id));
                    Err(RK_EIO)
                }
            }
        };
        set().unwrap_or_else(i64::from)
    })
}

/// Cancels a timer set with [`rk_set_timer`]. Returns [`RK_OK`],
/// [`RK_ENOTFOUND`] (it fired, was cancelled, or never existed),
/// [`RK_EINVAL`], [`RK_EBUSY`] (from `on_http`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
pub unsafe extern "C" fn rk_cancel_timer(s: *mut rk_server, timer: i64) -> c_int {
    guard_int("rk_cancel_timer", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        let Ok(raw) = u64::try_from(timer) else {
            return Err(RK_ENOTFOUND);
        };
        if raw == 0 || h.state.get() == State::Fresh {
            return Err(RK_ENOTFOUND);
        }
        let timer = TimerId(ConnId::from_u64(raw));
        if with_context(h, |ctx| ctx.cancel_timer(timer))? {
            Ok(RK_OK)
        } else {
            Err(RK_ENOTFOUND)
        }
    })
}
