//! The values a handler attaches to its connections
//! ([`crate::Context::set_user_data`]): one per connection, of any type,
//! kept in a map beside the connections so that a connection without one
//! costs nothing more, and dropped when its connection is removed (after
//! [`crate::Handler::on_close`], which can still read it).

use std::any::Any;
use std::collections::HashMap;

use super::slab::ConnId;

/// Each connection's value, by id.
#[derive(Default)]
pub(crate) struct UserData {
    values: HashMap<ConnId, Box<dyn Any>>,
}

impl UserData {
    /// Attaches `value` to `id`, in place of what it had.
    pub(crate) fn set(&mut self, id: ConnId, value: Box<dyn Any>) {
        self.values.insert(id, value);
    }

    /// `id`'s value, if it has one of type `T`.
    pub(crate) fn get<T: Any>(&self, id: ConnId) -> Option<&T> {
        self.values.get(&id)?.downcast_ref()
    }

    /// `id`'s value, mutably, if it has one of type `T`.
    pub(crate) fn get_mut<T: Any>(&mut self, id: ConnId) -> Option<&mut T> {
        self.values.get_mut(&id)?.downcast_mut()
    }

    /// Takes `id`'s value away, if it is of type `T` (another stays).
    pub(crate) fn take<T: Any>(&mut self, id: ConnId) -> Option<T> {
        if !self.values.get(&id)?.is::<T>() {
            return None;
        }
        let value = self.values.remove(&id)?.downcast().ok()?;
        self.release_spare();
        Some(*value)
    }

    /// Drops `id`'s value, if any: its connection is gone.
    pub(crate) fn forget(&mut self, id: ConnId) {
        if !self.values.is_empty() && self.values.remove(&id).is_some() {
            self.release_spare();
        }
    }

    /// A burst of connections must not keep the map's table resident once
    /// they have gone.
    fn release_spare(&mut self) {
        super::topics::release_spare(&mut self.values);
    }
}
