//! The core's side of paced output (`server::feed`): frames
//! handed to a connection as its socket takes what it was handed before,
//! and what else it is sent waiting behind them.

use super::*;

impl Core {
    /// [`Core::send`] to a connection with a paced feed: the message is
    /// encoded for it and waits behind the feed, counted as backlog.
    #[inline(never)]
    pub(super) fn send_behind_feed(
        &mut self,
        id: ConnId,
        msg: Message<'_>,
    ) -> Result<(), SendError> {
        let slot = self.slots.get_mut(id).ok_or(SendError::NotOpen)?;
        if !slot.conn.can_send() {
            return Err(SendError::NotOpen);
        }
        let bytes = slot.conn.encode(&mut self.codec, msg);
        feed_live(slot, id, &mut self.feeds, &self.settings, self.now, bytes);
        self.stats.messages_sent += 1;
        self.touch(id);
        Ok(())
    }

    /// Sends a frame encoded once for many as the connection's socket takes
    /// it (see [`super::feed`]): queued at once while its backlog is under
    /// the limit and nothing waits in its feed, else kept in its feed as a
    /// pointer until the backlog drains. Never closes the connection.
    pub(crate) fn send_paced(&mut self, id: ConnId, frame: &SharedFrame) -> Result<(), SendError> {
        let slot = self.slots.get_mut(id).ok_or(SendError::NotOpen)?;
        if !slot.conn.can_send() {
            return Err(SendError::NotOpen);
        }
        let bytes = slot.conn.shared_bytes(&mut self.codec, frame);
        if !slot.fed && slot.conn.backlog() < self.settings.max_backlog {
            slot.conn.queue_paced(&bytes)?;
        } else {
            let index = id.index();
            match self.feeds.get_mut(&index) {
                Some(feed) if slot.fed && feed.conn == id => feed.push_paced(bytes),
                _ => {
                    let mut feed = Feed::new(id);
                    feed.push_paced(bytes);
                    self.feeds.insert(index, feed);
                    slot.fed = true;
                }
            }
        }
        self.stats.messages_sent += 1;
        touch_slot(slot, id, &mut self.touched, &mut self.open_count);
        Ok(())
    }

    /// How many frames wait in `id`'s paced feed (0: none, or no feed).
    pub(crate) fn paced_waiting(&self, id: ConnId) -> usize {
        match self.slots.get(id) {
            Some(slot) if slot.fed => self
                .feeds
                .get(&id.index())
                .filter(|f| f.conn == id)
                .map_or(0, Feed::len),
            _ => 0,
        }
    }

    /// Live bytes waiting in the paced feed of `id` (0 without one).
    pub(super) fn live_behind_feed(&self, id: ConnId, slot: &Slot) -> usize {
        if !slot.fed {
            return 0;
        }
        self.feeds
            .get(&id.index())
            .filter(|f| f.conn == id)
            .map_or(0, Feed::live_bytes)
    }
}

/// Appends live bytes to the paced feed of `slot` (which has one): behind
/// the paced frames, counted as backlog. Past `max_backlog` of them the
/// connection is closed (1008) as a slow consumer, and its feed dropped.
pub(super) fn feed_live(
    slot: &mut Slot,
    id: ConnId,
    feeds: &mut HashMap<usize, Feed>,
    settings: &Settings,
    now: Instant,
    bytes: Rc<[u8]>,
) {
    let Some(feed) = feeds.get_mut(&id.index()).filter(|f| f.conn == id) else {
        // A flag without its feed (cannot happen): send it plainly.
        slot.fed = false;
        let _ = slot.conn.queue_paced(&bytes);
        return;
    };
    let live = feed.push_live(bytes);
    if live > settings.max_backlog {
        feeds.remove(&id.index());
        slot.fed = false;
        slot.conn.close_for_backlog(settings, now);
    }
}

/// Moves frames from the paced feed of `slot` to its queue while its
/// backlog is under the limit, writing them to its socket, until the socket
/// refuses bytes or the feed is empty; the feed goes once it is empty and
/// the backlog is under the limit (until then, what else the connection is
/// sent waits behind it: a queue over the limit must not meet the slow
/// consumer's check with output of its own). Stands in for the plain write
/// of [`Core::settle`].
pub(super) fn pump(
    slot: &mut Slot,
    id: ConnId,
    feeds: &mut HashMap<usize, Feed>,
    settings: &Settings,
    now: Instant,
    stats: &mut Stats,
) {
    let limit = settings.max_backlog;
    let feed = feeds.get_mut(&id.index()).filter(|f| f.conn == id);
    let Some(feed) = feed.filter(|_| slot.conn.can_send()) else {
        // Closing, or a flag without its feed: what is queued still goes.
        if feeds.get(&id.index()).is_some_and(|f| f.conn == id) {
            feeds.remove(&id.index());
            crate::server::topics::release_spare(feeds);
        }
        slot.fed = false;
        if slot.conn.has_output() && !slot.conn.wants_write() {
            transmit::flush(slot, settings, now, stats, &[], None);
        }
        return;
    };
    loop {
        while slot.conn.backlog() < limit {
            let Some(bytes) = feed.pop() else {
                break;
            };
            let _ = slot.conn.queue_paced(&bytes);
        }
        // On the ring the queue goes out with the pass's sends, and the
        // next completion settles it again: pumped once more then.
        if slot.io & IO_URING != 0
            || !slot.conn.has_output()
            || slot.conn.wants_write()
            || slot.tls_wants_write()
        {
            break;
        }
        transmit::flush(slot, settings, now, stats, &[], None);
        if feed.is_empty() || slot.conn.wants_write() || !slot.conn.can_send() {
            break;
        }
    }
    if (feed.is_empty() && slot.conn.backlog() < limit) || !slot.conn.can_send() {
        feeds.remove(&id.index());
        crate::server::topics::release_spare(feeds);
        slot.fed = false;
    }
}

/// On the ring, as its send is filled: moves frames from the paced feed of
/// `slot` to its queue while its backlog is under the limit, as [`pump`]
/// does; returns whether it moved any. The send takes the queue's bytes as
/// a write would, so one send carries as much of a replay as a write
/// would, not one queue's worth per pass.
pub(super) fn refill(
    slot: &mut Slot,
    id: ConnId,
    feeds: &mut HashMap<usize, Feed>,
    settings: &Settings,
) -> bool {
    if !slot.fed || !slot.conn.can_send() {
        return false;
    }
    let Some(feed) = feeds.get_mut(&id.index()).filter(|f| f.conn == id) else {
        return false;
    };
    let mut moved = false;
    while slot.conn.backlog() < settings.max_backlog {
        let Some(bytes) = feed.pop() else {
            break;
        };
        let _ = slot.conn.queue_paced(&bytes);
        moved = true;
    }
    moved
}
