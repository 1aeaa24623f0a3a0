//! What a C program does to connections: send, broadcast, close and kill,
//! and each connection's user pointer and peer address.

use super::*;

/// Sends a message (`is_text` non-zero: text, which must be UTF-8) to one
/// connection. `data` may be NULL when `len` is 0.
///
/// # Safety
///
/// `s` is NULL or a live handle; `data` is NULL or points to `len` bytes.
pub unsafe extern "C" fn rk_send(
    s: *mut rk_server,
    conn: u64,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    guard_int("rk_send", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let msg = message(unsafe { bytes(data, len) }?, is_text)?;
        with_context(s, |ctx| ctx.send(ConnId::from_u64(conn), msg))?.map_err(send_error)?;
        Ok(RK_OK)
    })
}

/// Sends a message to every open connection, encoding it once. Returns how
/// many connections it was given to (0 or more), or an error code.
///
/// # Safety
///
/// `s` is NULL or a live handle; `data` is NULL or points to `len` bytes.
pub unsafe extern "C" fn rk_broadcast(
    s: *mut rk_server,
    data: *const u8,
    len: usize,
    is_text: c_int,
) -> c_int {
    guard_int("rk_broadcast", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let msg = message(unsafe { bytes(data, len) }?, is_text)?;
        if s.state.get() == State::Fresh {
            return Ok(0);
        }
        let sent = with_context(s, |ctx| ctx.broadcast(msg))?;
        Ok(c_int::try_from(sent).unwrap_or(c_int::MAX))
    })
}

/// Closes a connection gracefully: a close frame with `code` and `reason`
/// (NULL: none; cut to 123 bytes), then waits for the peer's, at most the
/// close timeout. `on_close` follows.
///
/// # Safety
///
/// `s` is NULL or a live handle; `reason` is NULL or a NUL-terminated
/// string.
pub unsafe extern "C" fn rk_close(
    s: *mut rk_server,
    conn: u64,
    code: u16,
    reason: *const c_char,
) -> c_int {
    guard_int("rk_close", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        let reason = if reason.is_null() {
            ""
        } else {
            // SAFETY: per this function's contract.
            unsafe { c_str(reason) }?
        };
        let code = CloseCode::from(code);
        if !code.is_valid_on_wire() {
            return Err(RK_ECODE);
        }
        with_context(s, |ctx| ctx.close(ConnId::from_u64(conn), code, reason))?
            .map_err(send_error)?;
        Ok(RK_OK)
    })
}

/// Drops a connection at once (no closing handshake); `on_close` follows
/// with 1006 if it was open.
///
/// # Safety
///
/// `s` is NULL or a live handle.
pub unsafe extern "C" fn rk_kill(s: *mut rk_server, conn: u64) -> c_int {
    guard_int("rk_kill", || {
        // SAFETY: per this function's contract.
        let s = unsafe { handle(s) }?;
        with_context(s, |ctx| ctx.kill(ConnId::from_u64(conn)))?.map_err(send_error)?;
        Ok(RK_OK)
    })
}

// ---- per connection ------------------------------------------------------------------

/// Attaches `ptr` to `conn` (NULL detaches), from `on_upgrade` on, while
/// the connection is not closing; it is forgotten when the connection closes (after `on_close`, which may still
/// read it to free what it points to) or is refused. The library never
/// dereferences it. Returns [`RK_OK`], [`RK_EINVAL`], [`RK_ENOTOPEN`]
/// (unknown, closing or closed connection), [`RK_EBUSY`] (from `on_http`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
pub unsafe extern "C" fn rk_conn_set_user(s: *mut rk_server, conn: u64, ptr: *mut c_void) -> c_int {
    guard_int("rk_conn_set_user", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        // The connection being decided in on_upgrade, or one that may be
        // sent to (not closing: on_close may have been delivered already).
        let deciding = h.upgrade.borrow().as_ref().is_some_and(|c| c.conn == conn);
        if !deciding && !with_context(h, |ctx| ctx.can_send(ConnId::from_u64(conn)))? {
            return Err(RK_ENOTOPEN);
        }
        let mut users = h.conn_users.borrow_mut();
        if ptr.is_null() {
            users.remove(&conn);
        } else {
            users.insert(conn, ptr);
        }
        Ok(RK_OK)
    })
}

/// The pointer [`rk_conn_set_user`] attached to `conn`, or NULL (none, an
/// unknown or closed connection, or NULL `s`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
pub unsafe extern "C" fn rk_conn_user(s: *const rk_server, conn: u64) -> *mut c_void {
    guard("rk_conn_user", ptr::null_mut(), || {
        // SAFETY: per this function's contract.
        let Ok(h) = (unsafe { handle(s) }) else {
            return ptr::null_mut();
        };
        let users = h.conn_users.borrow();
        users.get(&conn).copied().unwrap_or(ptr::null_mut())
    })
}

/// Writes the peer's address of `conn` as `"IP:PORT"` (`"[IPv6]:PORT"`),
/// NUL-terminated, into `buf` (64 bytes always suffice). Returns [`RK_OK`],
/// [`RK_EINVAL`] (NULL, or `len` too small: then `buf` holds `""` if `len`
/// is not 0), [`RK_ENOTOPEN`], [`RK_EBUSY`] (from `on_http`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only; `buf` is NULL or
/// points to `len` writable bytes.
pub unsafe extern "C" fn rk_conn_peer(
    s: *const rk_server,
    conn: u64,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard_int("rk_conn_peer", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        if buf.is_null() {
            return Err(RK_EINVAL);
        }
        let peer = with_context(h, |ctx| ctx.peer_addr(ConnId::from_u64(conn)))?
            .ok_or(RK_ENOTOPEN)?
            .to_string();
        if peer.len() >= len {
            if len > 0 {
                // SAFETY: `buf` has at least one writable byte (contract).
                unsafe { buf.write(0) };
            }
            return Err(RK_EINVAL);
        }
        // SAFETY: `buf` has `len` > `peer.len()` writable bytes (contract),
        // which do not overlap `peer`'s own buffer.
        unsafe {
            ptr::copy_nonoverlapping(peer.as_ptr().cast::<c_char>(), buf, peer.len());
            buf.add(peer.len()).write(0);
        }
        Ok(RK_OK)
    })
}
