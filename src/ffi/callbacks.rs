//! The handler that turns the server's [`Handler`] calls into the C
//! callbacks of `rk_callbacks` (each inside the boundary's panic guard), and
//! the test hook that makes it panic (feature `internals` only).

use super::*;

impl Handler for FfiHandler {
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.dispatch(ctx, |cb, s, user| {
            if let Some(f) = cb.on_open {
                // SAFETY: the C caller registered a valid function pointer
                // of this signature; the arguments are plain values and the
                // handle, valid for the call.
                unsafe { f(s, conn.as_u64(), user) }
            }
        });
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Message<'_>) {
        #[cfg(feature = "internals")]
        {
            let owner: *const rk_server = self.owner;
            if !owner.is_null() && PANIC_ON_MESSAGE.with(|p| p.get()) == owner {
                PANIC_ON_MESSAGE.with(|p| p.set(ptr::null()));
                panic!("test hook: panic in on_message");
            }
        }
        let data = msg.as_bytes();
        let is_text = c_int::from(msg.is_text());
        self.dispatch(ctx, |cb, s, user| {
            if let Some(f) = cb.on_message {
                // SAFETY: as in `on_open`; `data` points to `data.len()`
                // bytes that live until this call returns.
                unsafe { f(s, conn.as_u64(), data.as_ptr(), data.len(), is_text, user) }
            }
        });
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, code: CloseCode, _reason: &str) {
        self.dispatch(ctx, |cb, s, user| {
            if let Some(f) = cb.on_close {
                // SAFETY: as in `on_open`.
                unsafe { f(s, conn.as_u64(), code.get(), user) }
            }
        });
        // After the callback, which may still want its pointer.
        self.owner().conn_users.borrow_mut().remove(&conn.as_u64());
    }

    fn on_upgrade(&mut self, ctx: &mut Context<'_>, conn: ConnId, req: &Request) -> Upgrade {
        let owner = self.owner();
        if owner.callbacks.get().on_upgrade.is_none() {
            return Upgrade::accept();
        }
        let request = rk_request::new(req);
        *owner.upgrade.borrow_mut() = Some(UpgradeCall {
            conn: conn.as_u64(),
            offered: crate::proto::handshake::offered_protocols(req)
                .map(str::to_string)
                .collect(),
            protocol: None,
        });
        let mut answer = RK_UPGRADE_ACCEPT;
        self.dispatch(ctx, |cb, s, user| {
            if let Some(f) = cb.on_upgrade {
                // SAFETY: as in `on_open`; `request` lives until this call
                // returns.
                answer = unsafe { f(s, conn.as_u64(), &request, user) };
            }
        });
        let protocol = owner.upgrade.borrow_mut().take().and_then(|c| c.protocol);
        match answer {
            RK_UPGRADE_ACCEPT => Upgrade::Accept {
                protocol,
                delayed: false,
            },
            RK_UPGRADE_DELAYED => Upgrade::Accept {
                protocol,
                delayed: true,
            },
            status => {
                owner.conn_users.borrow_mut().remove(&conn.as_u64());
                match u16::try_from(status) {
                    Ok(status @ 400..=599) => Upgrade::reject(status),
                    _ => {
                        error!("rookery: on_upgrade returned {status}, not 0, 1 or 400..599: answering 500");
                        Upgrade::reject(500)
                    }
                }
            }
        }
    }

    fn on_http(&mut self, req: &Request) -> Response {
        let owner = self.owner();
        let Some(f) = owner.callbacks.get().on_http else {
            return Response::status(404);
        };
        let request = rk_request::new(req);
        let mut response = rk_response::new();
        // No context is published here (the handler gets none): API calls
        // that need one return RK_EBUSY from inside on_http.
        // SAFETY: as in `on_open`; `request` and `response` live until this
        // call returns.
        unsafe { f(self.owner, &request, &mut response, owner.user.get()) };
        response.finish()
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        self.dispatch(ctx, |cb, s, user| {
            if let Some(f) = cb.on_timer {
                // SAFETY: as in `on_open`.
                unsafe { f(s, token, user) }
            }
        });
    }
}

/// Test hook, not part of the C API: the next message `s` receives makes
/// the Rust handler panic before any callback runs, so that tests can check
/// the panic is caught at the boundary. Hidden, unstable, and only in
/// builds with the feature `internals` (never librookery.a).
///
/// # Safety
///
/// `s` is NULL or a live handle.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub unsafe fn test_hook_panic_on_next_message(s: *mut rk_server) {
    // SAFETY: per this function's contract.
    if let Ok(s) = unsafe { handle(s) } {
        PANIC_ON_MESSAGE.with(|p| p.set(s));
    }
}
