//! Posting messages to the loop from other threads.
//!
//! The loop and everything it owns live on one thread; a [`Poster`] is the
//! one way in from others. It is a `Send + Clone` handle on a bounded queue
//! behind a [`Mutex`]: [`Poster::post`] copies the message into the queue,
//! and if the queue was empty it wakes the loop ([`Poller::notify`], one
//! `eventfd` write). Each pass of the loop takes the whole queue at once
//! (one lock, the vectors swapped, no copy) and sends the posts in the order
//! they were made: a post to one connection as [`super::Context::send`]
//! would, a post to every open connection as [`super::Context::broadcast`]
//! would. Posts from one thread therefore arrive in the order that thread
//! made them, and posts from different threads in the order they took the
//! lock.
//!
//! The queue holds at most [`super::Config::max_posted`] bytes: each post
//! counts its payload plus a small overhead (its place in the queue, 40
//! bytes on 64-bit targets). Past that, [`Poster::post`] fails with
//! [`PostError::Full`] and the caller may retry once the loop has caught
//! up. (A single message larger than the bound is accepted when the queue
//! is empty, so that it is not refused forever.)
//!
//! The queue closes when the server begins to shut down, and when it is
//! dropped: later posts fail with [`PostError::Stopped`], and nothing is
//! left in the queue. Posts accepted before the close are still sent (to the
//! connections still open) before the close frames.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::poller::Poller;

use crate::proto::connection::Message;

use super::slab::ConnId;

/// Why [`Poster::post`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// [`super::Config::max_posted`] bytes are already waiting: retry later.
    Full,
    /// The server is shutting down or gone.
    Stopped,
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PostError::Full => "the post queue is full",
            PostError::Stopped => "the server is stopping or stopped",
        })
    }
}

impl std::error::Error for PostError {}

/// One queued message.
pub(crate) struct Post {
    /// The connection, or `None` for every open connection.
    pub(crate) conn: Option<ConnId>,
    /// Whether `data` is text (then valid UTF-8: it came from a `&str`).
    pub(crate) text: bool,
    pub(crate) data: Vec<u8>,
}

impl Post {
    /// The message, as the loop sends it.
    pub(crate) fn message(&self) -> Message<'_> {
        if self.text {
            match std::str::from_utf8(&self.data) {
                Ok(text) => Message::Text(text),
                // Cannot happen (the bytes came from a `&str`); never panic.
                Err(_) => Message::Binary(&self.data),
            }
        } else {
            Message::Binary(&self.data)
        }
    }
}

/// What a post costs against the bound besides its payload: its place in
/// the queue, so that empty messages cannot fill memory unbounded.
pub(crate) const POST_OVERHEAD: usize = std::mem::size_of::<Post>();

struct Queue {
    posts: VecDeque<Post>,
    /// Payload bytes in `posts`, plus [`POST_OVERHEAD`] each.
    bytes: usize,
    max_bytes: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Whether `queue` may hold posts: set under the lock by a post into an
    /// empty queue, cleared under it by the loop taking them. The loop looks
    /// at it without the lock, every pass; a post it misses that way has
    /// woken the poller, so the next pass sees it.
    pending: AtomicBool,
    poller: Arc<Poller>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A poisoned lock only means a panic while it was held; the queue is
        // consistent after every statement that changes it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Posts messages to a running [`super::Server`] from any thread (see the
/// module documentation). Cheap to clone; made by
/// [`super::Server::poster`].
#[derive(Clone)]
pub struct Poster {
    shared: Arc<Shared>,
}

impl fmt::Debug for Poster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poster").finish_non_exhaustive()
    }
}

impl Poster {
    /// Queues a copy of `msg` for `conn` (`None`: every connection open when
    /// the loop sends it) and wakes the loop. A post to a connection that
    /// is closed by then is dropped.
    pub fn post(&self, conn: Option<ConnId>, msg: Message<'_>) -> Result<(), PostError> {
        let data = msg.as_bytes();
        let was_empty = {
            let mut queue = self.shared.lock();
            if queue.closed {
                return Err(PostError::Stopped);
            }
            let cost = data.len().saturating_add(POST_OVERHEAD);
            if !queue.posts.is_empty() && queue.bytes.saturating_add(cost) > queue.max_bytes {
                return Err(PostError::Full);
            }
            let was_empty = queue.posts.is_empty();
            if was_empty {
                self.shared.pending.store(true, Ordering::Release);
            }
            queue.posts.push_back(Post {
                conn,
                text: msg.is_text(),
                data: data.to_vec(),
            });
            queue.bytes += cost;
            was_empty
        };
        // The loop takes the whole queue each pass, so a non-empty queue
        // means a wake-up is already on its way.
        if was_empty {
            let _ = self.shared.poller.notify();
        }
        Ok(())
    }
}

/// The loop's end of the queue. Dropping it closes the queue.
pub(crate) struct PostBox {
    shared: Arc<Shared>,
}

impl PostBox {
    pub(crate) fn new(poller: Arc<Poller>, max_bytes: usize) -> PostBox {
        PostBox {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    posts: VecDeque::new(),
                    bytes: 0,
                    max_bytes,
                    closed: false,
                }),
                pending: AtomicBool::new(false),
                poller,
            }),
        }
    }

    pub(crate) fn poster(&self) -> Poster {
        Poster {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Whether a post may be waiting (one load): [`PostBox::take_into`]
    /// is only worth calling then.
    #[inline(always)]
    pub(crate) fn has_posts(&self) -> bool {
        self.shared.pending.load(Ordering::Acquire)
    }

    /// Moves every waiting post into `into` (which should be empty), oldest
    /// first. Swaps the vectors, so the queue keeps `into`'s capacity.
    /// Without posts, one load and no lock (a lock and an unlock, two
    /// atomic read-modify-writes, were ~30 instructions of every pass).
    pub(crate) fn take_into(&self, into: &mut VecDeque<Post>) {
        if !self.shared.pending.load(Ordering::Acquire) {
            return;
        }
        let mut queue = self.shared.lock();
        self.shared.pending.store(false, Ordering::Relaxed);
        if queue.posts.is_empty() {
            return;
        }
        std::mem::swap(&mut queue.posts, into);
        queue.bytes = 0;
    }

    /// Refuses every later post.
    pub(crate) fn close(&self) {
        self.shared.lock().closed = true;
    }
}

impl Drop for PostBox {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.closed = true;
        queue.posts = VecDeque::new();
        queue.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post_box(max: usize) -> PostBox {
        PostBox::new(Arc::new(Poller::new().unwrap()), max)
    }

    #[test]
    fn bounded_in_order_and_closed() {
        let posts = post_box(10 + 2 * POST_OVERHEAD);
        let poster = posts.poster();
        poster.post(None, Message::Text("12345")).unwrap();
        poster.post(None, Message::Binary(b"12345")).unwrap();
        assert_eq!(poster.post(None, Message::Text("x")), Err(PostError::Full));
        let mut taken = VecDeque::new();
        posts.take_into(&mut taken);
        assert_eq!(taken.len(), 2);
        assert!(taken[0].text && !taken[1].text);
        // Nothing since: nothing taken (and no lock taken for it).
        let mut more = VecDeque::new();
        posts.take_into(&mut more);
        assert!(more.is_empty());
        // Posts after a take are seen by the next one, from any thread.
        let other = poster.clone();
        std::thread::spawn(move || other.post(None, Message::Text("a")).unwrap())
            .join()
            .unwrap();
        poster.post(None, Message::Text("b")).unwrap();
        posts.take_into(&mut more);
        let got: Vec<_> = more.iter().map(|p| p.data.clone()).collect();
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
        // Emptied: a message over the bound goes into an empty queue.
        poster.post(None, Message::Binary(&[0; 100])).unwrap();
        posts.close();
        assert_eq!(
            poster.post(None, Message::Text("x")),
            Err(PostError::Stopped)
        );
        drop(posts);
        assert_eq!(
            poster.clone().post(None, Message::Text("x")),
            Err(PostError::Stopped)
        );
    }
}
