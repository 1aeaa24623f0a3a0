//! Topics: subscribing and unsubscribing connections,
//! publishing to a topic's members.

use super::*;

/// Subscribes connection `conn` to `topic` (a UTF-8 C string; any name):
/// it receives what [`rk_publish`] sends to `topic` from now on, in order
/// with everything else it is sent. A closed connection leaves all its
/// topics. Returns 1 if it was subscribed now, 0 if it already was, or
/// [`RK_EINVAL`], [`RK_EUTF8`], [`RK_ENOTOPEN`] (no such connection).
///
/// # Safety
///
/// `s` is NULL or a live handle; `topic` is NULL or a C string.
pub unsafe extern "C" fn rk_subscribe(s: *mut rk_server, conn: u64, topic: *const c_char) -> c_int {
    guard_int("rk_subscribe", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let topic = unsafe { c_str(topic) }?;
        let fresh = with_context(s, |ctx| ctx.subscribe(ConnId::from_u64(conn), topic))?
            .map_err(send_error)?;
        Ok(c_int::from(fresh))
    })
}

/// Unsubscribes connection `conn` from `topic`. Returns 1 if it was
/// subscribed, 0 if not, or [`RK_EINVAL`], [`RK_EUTF8`], [`RK_ENOTOPEN`].
///
/// # Safety
///
/// `s` is NULL or a live handle; `topic` is NULL or a C string.
pub unsafe extern "C" fn rk_unsubscribe(
    s: *mut rk_server,
    conn: u64,
    topic: *const c_char,
) -> c_int {
    guard_int("rk_unsubscribe", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let topic = unsafe { c_str(topic) }?;
        let was = with_context(s, |ctx| ctx.unsubscribe(ConnId::from_u64(conn), topic))?
            .map_err(send_error)?;
        Ok(c_int::from(was))
    })
}

/// Sends a message to the subscribers of `topic`, encoding it once.
/// Returns how many connections it was given to (0 or more), or
/// [`RK_EINVAL`], [`RK_EUTF8`].
///
/// # Safety
///
/// `s` is NULL or a live handle; `topic` is NULL or a C string; `data` is
/// NULL or points to `len` bytes.
pub unsafe extern "C" fn rk_publish(
    s: *mut rk_server,
    topic: *const c_char,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    guard_int("rk_publish", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let topic = unsafe { c_str(topic) }?;
        // SAFETY: per this function's contract.
        let msg = message(unsafe { bytes(data, len) }?, is_text)?;
        if s.state.get() == State::Fresh {
            return Ok(0);
        }
        let sent = with_context(s, |ctx| ctx.publish(topic, msg))?;
        Ok(c_int::try_from(sent).unwrap_or(c_int::MAX))
    })
}
