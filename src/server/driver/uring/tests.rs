//! The ring driver's tests, against real sockets on this kernel.

use super::*;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};

/// A ring on a new listener (kept with it: the ring's accept is armed on
/// it), or `None` where the kernel refuses io_uring.
fn new_ring() -> Option<(TcpListener, Ring)> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    match Ring::open(&listener) {
        Ok(ring) => Some((listener, ring)),
        Err(why) => {
            println!("SKIPPED: io_uring not found ({why})");
            None
        }
    }
}

/// [`new_ring`] with one connection accepted on it ([`connected`]): the
/// client and the server's socket.
fn ring_with_connection() -> Option<(TcpListener, Ring, TcpStream, OwnedFd)> {
    let (listener, mut ring) = new_ring()?;
    let (client, fd) = connected(&mut ring, &listener);
    Some((listener, ring, client, fd))
}

/// The completions of waits until `found` picks one (at most 50 waits).
fn wait_for<T>(ring: &mut Ring, mut found: impl FnMut(Done) -> Option<T>) -> T {
    for _ in 0..50 {
        ring.wait(Some(Duration::from_millis(100))).expect("wait");
        if let Some(t) = ring.done.iter().find_map(|d| found(*d)) {
            return t;
        }
    }
    panic!("no such completion");
}

#[test]
fn a_receive_waits_for_the_next_entry_flagged_instead_of_interrupting() {
    let Some((listener, mut ring)) = new_ring() else {
        return;
    };
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let fd = wait_for(&mut ring, |d| match d {
        Done::Accept { res, .. } => accepted_fd(res),
        _ => None,
    });
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        println!("SKIPPED: a second core not found");
        return;
    }
    let id = ConnId::from_u64(1);
    ring.recv(fd.as_raw_fd(), id);
    ring.submit();
    // The flag is up from the completion until this thread next enters
    // the kernel or is switched out: either runs the pending work. So the
    // bytes come from a writer on the other core, and this thread reads
    // the flag all along, with no system call, until the byte is written.
    // A try where this thread was switched out (the machine is busy) sees
    // nothing: up to 10,000 tries, with one writer spinning throughout so
    // that no thread is started while the flag is watched.
    let asked = AtomicU32::new(0);
    let written = AtomicU32::new(0);
    let mut flagged = false;
    /// Stops the writer however the watching ends (a panic too: the
    /// scope waits for the writer).
    struct Stop<'a>(&'a AtomicU32);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(u32::MAX, Ordering::Release);
        }
    }
    std::thread::scope(|scope| {
        let writing = scope.spawn(|| {
            let mut writer = &client;
            let mut done = 0;
            loop {
                let wanted = asked.load(Ordering::Acquire);
                if wanted == u32::MAX {
                    return;
                }
                if wanted == done {
                    std::hint::spin_loop();
                    continue;
                }
                writer.write_all(b"x").expect("write");
                done = wanted;
                written.store(done, Ordering::Release);
            }
        });
        let _stop = Stop(&asked);
        for try_ in 1..=10_000 {
            asked.store(try_, Ordering::Release);
            while written.load(Ordering::Acquire) != try_ {
                flagged |= ring.ring.submission().taskrun();
                assert!(!writing.is_finished(), "the writer failed");
            }
            flagged |= ring.ring.submission().taskrun();
            let got = wait_for(&mut ring, |d| match d {
                Done::Recv { res, bid, .. } => Some((res, bid)),
                _ => None,
            });
            assert_eq!(got.0, 1, "one byte received");
            if let Some(bid) = got.1 {
                ring.take(bid, false, 1, &mut [0; 1]);
            }
            if flagged {
                break;
            }
        }
    });
    assert!(flagged, "a pending completion sets IORING_SQ_TASKRUN");
    assert!(
        !ring.ring.submission().taskrun(),
        "the wait ran the pending work"
    );
}

#[test]
fn receives_sharing_a_buffer_each_get_their_own_bytes() {
    let Some((listener, mut ring)) = new_ring() else {
        return;
    };
    let addr = listener.local_addr().expect("addr");
    let mut clients = Vec::new();
    let mut fds = Vec::new();
    for n in 1..=2u64 {
        clients.push(TcpStream::connect(addr).expect("connect"));
        let fd = wait_for(&mut ring, |d| match d {
            Done::Accept { res, .. } => accepted_fd(res),
            _ => None,
        });
        ring.recv(fd.as_raw_fd(), ConnId::from_u64(n));
        fds.push(fd);
    }
    let mut seen = Vec::new();
    for (client, bytes) in clients.iter_mut().zip([&b"first"[..], &b"second!"[..]]) {
        client.write_all(bytes).expect("write");
        let (res, bid, kept) = wait_for(&mut ring, |d| match d {
            Done::Recv { res, bid, kept, .. } => Some((res, bid, kept)),
            _ => None,
        });
        let mut into = [0; 16];
        let len = usize::try_from(res).expect("received");
        let n = ring.take(bid.expect("a buffer"), kept, len, &mut into);
        assert_eq!(&into[..n], bytes);
        seen.push((bid, kept));
    }
    if ring.bufs.geometry.incremental {
        assert_eq!(
            seen[0].0, seen[1].0,
            "the kernel went on filling one buffer"
        );
        assert!(seen[0].1 && seen[1].1, "and kept it");
    }
}

/// The bytes `n` (a pattern that shows a reorder or a repeat).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A connection accepted on the ring, with a send buffer of 4 KiB so
/// that a large send completes short while its reader is slow.
fn connected(ring: &mut Ring, listener: &TcpListener) -> (TcpStream, OwnedFd) {
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let fd = wait_for(ring, |d| match d {
        Done::Accept { res, .. } => accepted_fd(res),
        _ => None,
    });
    rustix::net::sockopt::set_socket_send_buffer_size(&fd, 4096).expect("SO_SNDBUF");
    (client, fd)
}

/// A queue of `total` bytes of `pattern` in chunks, taken whole.
fn taken(total: usize) -> TakenOutput {
    let bytes = pattern(total);
    let mut queue = crate::proto::output::OutQueue::default();
    for part in bytes.chunks(20_000) {
        queue.push_copy(&[part]);
    }
    let mut out = TakenOutput::default();
    queue.take_front(usize::MAX, super::super::SEND_SLICES, &mut out);
    queue.push_copy(&[b"queued after the send: not part of it"]);
    out
}

fn read_all(mut client: TcpStream) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut got).expect("read");
        got
    })
}

#[test]
fn a_send_from_the_queue_cut_short_goes_on_from_where_it_stopped() {
    let Some((_listener, mut ring, client, fd)) = ring_with_connection() else {
        return;
    };
    let id = ConnId::from_u64(1);
    let total = 1_000_000;
    ring.send(fd.as_raw_fd(), id, taken(total));
    let reader = read_all(client);
    let (mut sent, mut short) = (0, 0);
    while sent < total {
        let res = wait_for(&mut ring, |d| match d {
            Done::Send { res, .. } => Some(res),
            _ => None,
        });
        let n = usize::try_from(res).expect("sent");
        sent += n;
        if sent < total {
            short += 1;
            ring.send_rest(fd.as_raw_fd(), id, n);
        }
    }
    ring.send_finished(id);
    drop(fd);
    assert!(short > 0, "the socket's 4 KiB buffer cut the send short");
    assert!(
        reader.join().expect("reader") == pattern(total),
        "every byte once, in order"
    );
}

#[test]
fn a_send_in_flight_keeps_its_bytes_after_its_connection_is_forgotten() {
    let Some((_listener, mut ring, client, fd)) = ring_with_connection() else {
        return;
    };
    let id = ConnId::from_u64(1);
    let total = 1_000_000;
    ring.send(fd.as_raw_fd(), id, taken(total));
    ring.submit();
    // Nobody reads: the send waits for room. Its connection goes; the
    // bytes stay with the ring until the kernel is done with them.
    ring.forget(id, false);
    assert_eq!(ring.orphans.len(), 1);
    let noise = vec![0xeeu8; total];
    let reader = read_all(client);
    let res = wait_for(&mut ring, |d| match d {
        Done::Send {
            index,
            generation,
            res,
        } => Some((index, generation, res)),
        _ => None,
    });
    ring.send_done(res.0, res.1);
    assert!(ring.orphans.is_empty(), "freed at its completion");
    drop(fd);
    let got = reader.join().expect("reader");
    let n = usize::try_from(res.2).expect("sent");
    assert_eq!(got.len(), n);
    assert!(got == pattern(total)[..n], "what went is the send's bytes");
    drop(noise);
}

#[test]
fn a_send_now_completes_within_the_pass_and_keeps_the_rest_for_the_next() {
    let Some((_listener, mut ring, mut client, fd)) = ring_with_connection() else {
        return;
    };
    let id = ConnId::from_u64(1);
    ring.recv(fd.as_raw_fd(), id);
    ring.submit();
    client.write_all(b"ping").expect("write");
    // The receive's completion waits for the next entry; the send goes
    // with it and completes at once.
    ring.send(fd.as_raw_fd(), id, {
        let mut out = TakenOutput::default();
        out.push_copy(b"pong".to_vec());
        out
    });
    let mut res = None;
    for _ in 0..100 {
        res = ring.send_now(id);
        if res.is_some() {
            break;
        }
    }
    assert_eq!(res, Some(4), "the send's completion, taken at once");
    ring.send_finished(id);
    assert!(ring.has_work(), "what else came is for the next pass");
    let got = wait_for(&mut ring, |d| match d {
        Done::Recv { res, bid, kept, .. } => Some((res, bid, kept)),
        _ => None,
    });
    assert_eq!(got.0, 4);
    if let (Some(bid), Ok(len)) = (got.1, usize::try_from(got.0)) {
        let mut into = [0; 4];
        ring.take(bid, got.2, len, &mut into);
        assert_eq!(&into, b"ping");
    }
    let mut pong = [0; 4];
    std::io::Read::read_exact(&mut client, &mut pong).expect("read");
    assert_eq!(&pong, b"pong");
}

#[test]
fn small_copy_buffers_and_outputs_are_kept_for_a_pass_of_dozens_of_sends() {
    let Some((_listener, mut ring)) = new_ring() else {
        return;
    };
    for _ in 0..100 {
        let mut out = TakenOutput::default();
        out.push_copy(vec![7; 512]);
        ring.recycle_output(out);
    }
    assert_eq!(ring.spare.len(), SPARE_SMALL);
    assert_eq!(ring.spare_outputs.len(), SPARE_SMALL);
    // Large ones only while few are kept.
    ring.recycle(Vec::with_capacity(32 * 1024));
    assert_eq!(ring.spare.len(), SPARE_SMALL);
    ring.spare.truncate(2);
    ring.recycle(Vec::with_capacity(32 * 1024));
    assert_eq!(ring.spare.len(), 3);
    // And none past what a send keeps.
    ring.recycle(Vec::with_capacity(2 * SEND_KEEP));
    assert_eq!(ring.spare.len(), 3);
}

#[test]
fn the_lists_of_sends_keep_their_memory_from_pass_to_pass() {
    let Some((_listener, mut ring)) = new_ring() else {
        return;
    };
    for n in 0..3 {
        ring.queued_sends.push((ConnId::from_u64(n), n));
    }
    ring.wait(Some(Duration::ZERO)).expect("wait");
    assert!(ring.stuck_sends().is_empty());
    ring.wait(Some(Duration::ZERO)).expect("wait");
    // The list the first wait submitted is the next to be queued to.
    assert!(ring.queued_sends.capacity() >= 3);
}

#[test]
fn a_send_taken_whole_in_the_middle_of_a_pass_gives_its_bytes_back_at_once() {
    let Some((_listener, mut ring, mut client, fd)) = ring_with_connection() else {
        return;
    };
    let id = ConnId::from_u64(1);
    let mut out = TakenOutput::default();
    out.push_copy(b"whole".to_vec());
    ring.send(fd.as_raw_fd(), id, out);
    let spare = ring.spare.len();
    ring.submit();
    for _ in 0..100 {
        ring.reap_releasing_sends();
        if !ring.late.is_empty() {
            break;
        }
    }
    assert!(
        matches!(ring.late.as_slice(), [Done::Send { res: 5, .. }]),
        "{:?}",
        ring.late
    );
    // Its record and bytes went back before the connection heard of it.
    assert_eq!(ring.send_len(id), None);
    assert_eq!(ring.spare.len(), spare + 1);
    let mut got = [0; 5];
    std::io::Read::read_exact(&mut client, &mut got).expect("read");
    assert_eq!(&got, b"whole");
}
