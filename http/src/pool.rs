//! Which connections a server keeps, without I/O: a pool of at most `max` connections, each
//! waiting for a request head, answering, or idle between requests, with the deadline of
//! that state. When the pool is full, a newcomer takes the place of the connection that has
//! waited longest for a complete request head (one that has sent nothing yet, or part of a
//! head), so that silent or half-sent connections cannot lock others out, as nginx reuses its
//! waiting connections. Where peer addresses differ, one holding more than its share is the
//! first to give up connections, idle ones too, and only ever displaces its own.

use alloc::collections::BTreeMap;
use core::time::Duration;

/// How long a connection may wait in each state.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For a complete request head: from the connection's start until its first, and from the
    /// end of each request (or the first byte after an idle spell) until the next.
    pub header: Duration,
    /// Between requests, before any byte of the next.
    pub idle: Duration,
}

/// A connection in a [`Pool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Id(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No complete request head yet: the first, or the next one begun.
    Head,
    Answering,
    /// A request answered, nothing of the next one come.
    Idle,
}

#[derive(Debug)]
struct Member<P, T> {
    peer: P,
    state: State,
    since: Duration,
    handle: T,
}

/// The answer to a new connection.
#[derive(Debug)]
pub enum Admission<T> {
    /// Served as `id`; when the pool was full, `evicted` made room and must be closed.
    In { id: Id, evicted: Option<Evicted<T>> },
    /// Every connection in the pool is answering or another peer's to keep: refuse (503).
    Full,
}

/// A connection put out of the pool to make room.
#[derive(Debug)]
pub struct Evicted<T> {
    pub handle: T,
    /// It was idle after a response: close it quietly (RFC 9112 §9.3); otherwise its request
    /// head is unanswered, and it gets a 503.
    pub between_requests: bool,
}

/// The connections served at once; `P` is a peer's address, `T` what the caller needs to
/// close an evicted connection. Times are durations since any fixed start.
#[derive(Debug)]
pub struct Pool<P, T> {
    members: BTreeMap<Id, Member<P, T>>,
    /// Connections held by each peer address.
    peers: BTreeMap<P, usize>,
    max: usize,
    timeouts: Timeouts,
    next: u64,
}

impl<P: Ord + Copy, T> Pool<P, T> {
    pub fn new(max: usize, timeouts: Timeouts) -> Pool<P, T> {
        Pool { members: BTreeMap::new(), peers: BTreeMap::new(), max, timeouts, next: 0 }
    }

    /// Changes the limit (the heap's room changed); connections beyond it stay until they end.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Connections a peer may hold once the pool is full and others want in: a quarter.
    fn share(&self) -> usize {
        (self.max / 4).max(1)
    }

    /// Takes a connection from `peer` that started at `now`, waiting for its first request head.
    pub fn admit(&mut self, peer: P, now: Duration, handle: T) -> Admission<T> {
        let mut evicted = None;
        if self.members.len() >= self.max {
            let Some(victim) = self.victim(peer) else {
                return Admission::Full;
            };
            let member = self.take(victim);
            evicted = Some(Evicted { handle: member.handle, between_requests: member.state == State::Idle });
        }
        let id = Id(self.next);
        self.next += 1;
        self.members.insert(id, Member { peer, state: State::Head, since: now, handle });
        *self.peers.entry(peer).or_default() += 1;
        Admission::In { id, evicted }
    }

    /// The connection to make room for one from `peer`: of a peer over its share (`peer`
    /// itself when it is at its share), else of anyone, the one waiting longest for a head.
    fn victim(&self, peer: P) -> Option<Id> {
        let held = |p: &P| self.peers.get(p).copied().unwrap_or(0);
        let own = held(&peer) >= self.share();
        let longest = |eligible: &dyn Fn(&Member<P, T>) -> bool| {
            self.members
                .iter()
                .filter(|(_, m)| eligible(m))
                .min_by_key(|(id, m)| (m.since, **id))
                .map(|(id, _)| *id)
        };
        if own {
            return longest(&|m| m.peer == peer && m.state == State::Head);
        }
        longest(&|m| held(&m.peer) > self.share() && m.state != State::Answering)
            .or_else(|| longest(&|m| m.state == State::Head))
    }

    fn take(&mut self, id: Id) -> Member<P, T> {
        let member = self.members.remove(&id).expect("a member");
        if let Some(held) = self.peers.get_mut(&member.peer) {
            *held -= 1;
            if *held == 0 {
                self.peers.remove(&member.peer);
            }
        }
        member
    }

    /// Bytes came at `now`: an idle connection starts waiting for a head.
    pub fn bytes_arrived(&mut self, id: Id, now: Duration) {
        if let Some(member) = self.members.get_mut(&id).filter(|m| m.state == State::Idle) {
            member.state = State::Head;
            member.since = now;
        }
    }

    /// A complete request head came: the connection answers, and is not evicted meanwhile.
    pub fn answering(&mut self, id: Id) {
        if let Some(member) = self.members.get_mut(&id) {
            member.state = State::Answering;
        }
    }

    /// The answers were sent at `now`; `partial` if bytes of the next request are held. The
    /// header timer starts again either way: after each complete request, not only when the
    /// input runs dry, so a client that pipelines without pause is not cut off.
    pub fn answered(&mut self, id: Id, now: Duration, partial: bool) {
        if let Some(member) = self.members.get_mut(&id).filter(|m| m.state == State::Answering) {
            member.state = if partial { State::Head } else { State::Idle };
            member.since = now;
        }
    }

    /// When the connection's wait ends; `None` while it answers, or once it has left.
    pub fn deadline(&self, id: Id) -> Option<Duration> {
        let member = self.members.get(&id)?;
        match member.state {
            State::Head => Some(member.since + self.timeouts.header),
            State::Idle => Some(member.since + self.timeouts.idle),
            State::Answering => None,
        }
    }

    /// The connection ended (nothing happens if it was evicted).
    pub fn remove(&mut self, id: Id) {
        if self.members.contains_key(&id) {
            self.take(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const TIMEOUTS: Timeouts = Timeouts { header: Duration::from_secs(10), idle: Duration::from_secs(30) };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A pool of `max` whose handles are the connections' numbers.
    fn pool(max: usize) -> Pool<u8, u32> {
        Pool::new(max, TIMEOUTS)
    }

    fn admit(pool: &mut Pool<u8, u32>, peer: u8, now: u64, n: u32) -> (Id, Option<u32>) {
        match pool.admit(peer, secs(now), n) {
            Admission::In { id, evicted } => (id, evicted.map(|e| e.handle)),
            Admission::Full => panic!("connection {n} refused"),
        }
    }

    /// A request served on `id` at `now`, nothing of the next one held.
    fn serve(pool: &mut Pool<u8, u32>, id: Id, now: u64) {
        pool.answering(id);
        pool.answered(id, secs(now), false);
    }

    #[test]
    fn a_connection_that_sends_nothing_gets_the_header_timeout() {
        let mut pool = pool(4);
        let (id, _) = admit(&mut pool, 1, 5, 0);
        assert_eq!(pool.deadline(id), Some(secs(15)));
        serve(&mut pool, id, 7);
        assert_eq!(pool.deadline(id), Some(secs(37)), "idle after a request");
        pool.bytes_arrived(id, secs(20));
        assert_eq!(pool.deadline(id), Some(secs(30)), "a head begun");
    }

    #[test]
    fn the_header_timer_restarts_after_each_complete_request() {
        let mut pool = pool(4);
        let (id, _) = admit(&mut pool, 1, 0, 0);
        // Every read ends one request and begins the next: each gets its own 10 s.
        for t in [6, 12, 18, 24] {
            pool.answering(id);
            assert_eq!(pool.deadline(id), None, "no timer while answering");
            pool.answered(id, secs(t), true);
            assert_eq!(pool.deadline(id), Some(secs(t + 10)));
        }
        // A read that completes nothing leaves the timer running.
        pool.bytes_arrived(id, secs(26));
        assert_eq!(pool.deadline(id), Some(secs(34)));
    }

    #[test]
    fn a_full_pool_evicts_the_connection_waiting_longest_for_a_head() {
        let mut pool = pool(3);
        let (served, _) = admit(&mut pool, 1, 0, 0);
        serve(&mut pool, served, 1);
        let (silent, _) = admit(&mut pool, 1, 2, 1);
        let (half, _) = admit(&mut pool, 1, 3, 2);
        assert_eq!(admit(&mut pool, 1, 4, 3).1, Some(1));
        assert_eq!(pool.deadline(silent), None, "gone");
        assert_eq!(admit(&mut pool, 1, 5, 4).1, Some(2));
        assert_eq!(pool.deadline(half), None);
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.deadline(served), Some(secs(31)), "the idle one served stays");
    }

    #[test]
    fn answering_and_idle_connections_of_one_peer_are_kept_and_the_newcomer_refused() {
        let mut pool = pool(2);
        let (a, _) = admit(&mut pool, 1, 0, 0);
        let (b, _) = admit(&mut pool, 1, 0, 1);
        pool.answering(a);
        serve(&mut pool, b, 1);
        assert!(matches!(pool.admit(1, secs(2), 2), Admission::Full));
        pool.remove(a);
        assert_eq!(admit(&mut pool, 1, 3, 3).1, None);
    }

    /// 300 connections that each sent half a head, then 20 ordinary requests: every one served.
    #[test]
    fn half_sent_heads_never_lock_out_ordinary_requests() {
        let mut pool = pool(45);
        for n in 0..300u32 {
            let (id, evicted) = admit(&mut pool, 1, u64::from(n / 100), n);
            pool.bytes_arrived(id, secs(u64::from(n / 100)));
            // The oldest goes first.
            assert_eq!(evicted, n.checked_sub(45));
        }
        for n in 300..320 {
            let (id, evicted) = admit(&mut pool, 1, 3, n);
            assert!(evicted.is_some_and(|e| e < 300), "a half-sent one made room");
            serve(&mut pool, id, 3);
        }
        assert_eq!(pool.len(), 45);
    }

    #[test]
    fn a_peer_over_its_share_gives_way_to_others_and_displaces_only_its_own() {
        // Share: 2 of 8.
        let mut pool = pool(8);
        let (mine, _) = admit(&mut pool, 9, 0, 100);
        let (other, _) = admit(&mut pool, 8, 0, 101);
        serve(&mut pool, mine, 1);
        serve(&mut pool, other, 1);
        // Peer 1 fills the rest: 2 connections answering, 4 idle after a request.
        let hog: Vec<Id> = (0..6).map(|n| admit(&mut pool, 1, 2 + u64::from(n), n).0).collect();
        for &id in &hog[..4] {
            serve(&mut pool, id, 10);
        }
        pool.answering(hog[4]);
        pool.answering(hog[5]);
        // Peer 1 wants more: it has no head waiting of its own, and may not take others'.
        assert!(matches!(pool.admit(1, secs(11), 6), Admission::Full));
        // Peer 9 gets in at the hog's expense, even its idle connections.
        assert_eq!(admit(&mut pool, 9, 12, 102).1, Some(0));
        assert_eq!(admit(&mut pool, 7, 12, 103).1, Some(1));
        assert_eq!(pool.deadline(mine), Some(secs(31)));
        // Evicted between requests: closed quietly.
        match pool.admit(5, secs(13), 104) {
            Admission::In { evicted: Some(e), .. } => assert_eq!((e.handle, e.between_requests), (2, true)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_smaller_limit_holds_for_new_connections() {
        let mut pool = pool(3);
        let ids: Vec<Id> = (0..3).map(|n| admit(&mut pool, 1, 0, n).0).collect();
        ids.iter().for_each(|&id| serve(&mut pool, id, 1));
        pool.set_max(2);
        assert!(matches!(pool.admit(1, secs(2), 3), Admission::Full));
        pool.remove(ids[0]);
        pool.remove(ids[0]);
        assert!(matches!(pool.admit(1, secs(2), 4), Admission::Full), "still 2 held");
        pool.remove(ids[1]);
        assert_eq!(pool.len(), 1);
        assert_eq!(admit(&mut pool, 1, 3, 5).1, None);
    }
}
