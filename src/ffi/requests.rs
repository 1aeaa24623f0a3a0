//! Upgrades and HTTP answers: reading an `rk_request` (method, path, query,
//! headers), filling an `rk_response`, choosing a subprotocol and
//! activating a delayed upgrade.

use super::*;

// ---- upgrades and HTTP answers -----------------------------------------------------

/// The request's method (`"GET"`), NUL-terminated; NULL if `r` is NULL.
///
/// # Safety
///
/// `r` is NULL or the request passed to the running `on_upgrade` or
/// `on_http`; the result is valid until that callback returns.
pub unsafe extern "C" fn rk_request_method(r: *const rk_request) -> *const c_char {
    guard("rk_request_method", ptr::null(), || {
        // SAFETY: per this function's contract.
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| r.method.as_ptr())
    })
}

/// The request's path, without the query; NULL if `r` is NULL.
///
/// # Safety
///
/// As for [`rk_request_method`].
pub unsafe extern "C" fn rk_request_path(r: *const rk_request) -> *const c_char {
    guard("rk_request_path", ptr::null(), || {
        // SAFETY: per this function's contract.
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| r.path.as_ptr())
    })
}

/// The request's query, after `?` (`""` if none; not decoded); NULL if `r`
/// is NULL.
///
/// # Safety
///
/// As for [`rk_request_method`].
pub unsafe extern "C" fn rk_request_query(r: *const rk_request) -> *const c_char {
    guard("rk_request_query", ptr::null(), || {
        // SAFETY: per this function's contract.
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| r.query.as_ptr())
    })
}

/// The value of the first header field called `name` (any case), or NULL
/// if there is none (or `r` or `name` is NULL).
///
/// # Safety
///
/// As for [`rk_request_method`]; `name` is NULL or a NUL-terminated string.
pub unsafe extern "C" fn rk_request_header(
    r: *const rk_request,
    name: *const c_char,
) -> *const c_char {
    guard("rk_request_header", ptr::null(), || {
        // SAFETY: per this function's contract.
        let Some(r) = (unsafe { r.as_ref() }) else {
            return ptr::null();
        };
        // SAFETY: per this function's contract.
        let Ok(name) = (unsafe { c_str(name) }) else {
            return ptr::null();
        };
        // SAFETY: `req` points to the request the callback was given, alive
        // until it returns (contract).
        let req = unsafe { &*r.req };
        let Some(value) = req.header(name).and_then(|v| CString::new(v).ok()) else {
            return ptr::null();
        };
        let mut kept = r.headers.borrow_mut();
        kept.push(value);
        kept.last().map_or(ptr::null(), |v| v.as_ptr())
    })
}

/// Sets the status of `on_http`'s answer (200..=599; it starts as 404).
/// Returns [`RK_OK`] or [`RK_EINVAL`].
///
/// # Safety
///
/// `res` is NULL or the response passed to the running `on_http`.
pub unsafe extern "C" fn rk_response_status(res: *mut rk_response, status: c_int) -> c_int {
    guard_int("rk_response_status", || {
        // SAFETY: per this function's contract.
        let res = unsafe { res.as_mut() }.ok_or(RK_EINVAL)?;
        res.status = match u16::try_from(status) {
            Ok(status @ 200..=599) => status,
            _ => return Err(RK_EINVAL),
        };
        Ok(RK_OK)
    })
}

/// Adds a header field to `on_http`'s answer (both copied). A
/// `Content-Type` replaces the default one; `Content-Length` and
/// `Connection` are the library's own, and a name that is not an HTTP token
/// or a value with CR, LF or NUL is refused. Returns [`RK_OK`],
/// [`RK_EINVAL`] or [`RK_EUTF8`].
///
/// # Safety
///
/// `res` is NULL or the response passed to the running `on_http`; `name`
/// and `value` are NULL or NUL-terminated strings.
pub unsafe extern "C" fn rk_response_header(
    res: *mut rk_response,
    name: *const c_char,
    value: *const c_char,
) -> c_int {
    guard_int("rk_response_header", || {
        // SAFETY: per this function's contract.
        let res = unsafe { res.as_mut() }.ok_or(RK_EINVAL)?;
        // SAFETY: per this function's contract.
        let (name, value) = unsafe { (c_str(name)?, c_str(value)?) };
        let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
        if name.is_empty()
            || !name.bytes().all(token)
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("connection")
            || value.bytes().any(|c| c == b'\r' || c == b'\n')
        {
            return Err(RK_EINVAL);
        }
        res.headers.push((name.to_string(), value.to_string()));
        Ok(RK_OK)
    })
}

/// Sets the body of `on_http`'s answer (copied; `body` may be NULL when
/// `len` is 0). Without a body, the answer carries the status's text.
/// Returns [`RK_OK`] or [`RK_EINVAL`].
///
/// # Safety
///
/// `res` is NULL or the response passed to the running `on_http`; `body`
/// is NULL or points to `len` bytes.
pub unsafe extern "C" fn rk_response_body(
    res: *mut rk_response,
    body: *const u8,
    len: usize,
) -> c_int {
    guard_int("rk_response_body", || {
        // SAFETY: per this function's contract.
        let res = unsafe { res.as_mut() }.ok_or(RK_EINVAL)?;
        // SAFETY: per this function's contract.
        let body = unsafe { bytes(body, len) }?;
        res.body = Some(body.to_vec());
        Ok(RK_OK)
    })
}

/// Inside `on_upgrade` for `conn` only: answer with this subprotocol, which
/// must be one the client offered. Returns [`RK_OK`], [`RK_EINVAL`] (NULL,
/// or not offered), [`RK_EUTF8`], or [`RK_EBUSY`] (not inside `on_upgrade`
/// for `conn`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only; `protocol` is
/// NULL or a NUL-terminated string.
pub unsafe extern "C" fn rk_accept_protocol(
    s: *mut rk_server,
    conn: u64,
    protocol: *const c_char,
) -> c_int {
    guard_int("rk_accept_protocol", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        // SAFETY: per this function's contract.
        let protocol = unsafe { c_str(protocol) }?;
        let mut upgrade = h.upgrade.borrow_mut();
        let call = upgrade
            .as_mut()
            .filter(|c| c.conn == conn)
            .ok_or(RK_EBUSY)?;
        if !call.offered.iter().any(|o| o == protocol) {
            return Err(RK_EINVAL);
        }
        call.protocol = Some(protocol.to_string());
        Ok(RK_OK)
    })
}

/// Opens a connection accepted with [`RK_UPGRADE_DELAYED`]: `on_open`
/// follows (after the current callback) and its frames are read. Returns
/// [`RK_OK`], [`RK_EINVAL`], [`RK_ENOTOPEN`] (unknown, or not waiting for
/// activation), [`RK_EBUSY`] (from `on_http`).
///
/// # Safety
///
/// `s` is NULL or a live handle, used on this thread only.
pub unsafe extern "C" fn rk_activate(s: *mut rk_server, conn: u64) -> c_int {
    guard_int("rk_activate", || {
        // SAFETY: per this function's contract.
        let h = unsafe { handle(s) }?;
        with_context(h, |ctx| ctx.activate(ConnId::from_u64(conn)))?.map_err(send_error)?;
        Ok(RK_OK)
    })
}
