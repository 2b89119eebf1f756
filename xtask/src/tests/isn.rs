//! A predictor of TCP initial sequence numbers as mote chose them before issue #21: smoltcp's
//! generator seeded from the MAC and the boot-relative time. The echo case records a guest's
//! ISNs from dom0 and asks it to predict each from the ones before; the tests below show it
//! does predict ISNs made the old way, so that its failing on a mote means something.
//!
//! The attacker it models knows the MAC (it is on the wire, and in the console line
//! `net: vif 0 connected, mac …`) and roughly when the stack was made on the PV clock, which
//! counts nanoseconds since Xen booted (not the domain): [`window`] is every nanosecond of
//! 2 s around an estimate (2·10⁹ seeds, some seconds on two cores). For each candidate seed,
//! the first ISN seen may be any of the generator's first [`FIRST_DRAWS`] outputs (smoltcp's
//! `Interface::new` draws the first IPv4 identification before any ISN); each later ISN any
//! of the [`SKIP`] outputs after the last one matched, in case something else drew in
//! between (a connection we did not record, a retry for a zero IPv4 identification, an MLD
//! report's delay).

use std::ops::Range;
use std::thread;

/// The PV clock times searched for a stack made at about `estimate` ns: from 1.5 s before
/// to 0.5 s after (an estimate taken once the stack's console line arrived is late, if
/// anything).
pub fn window(estimate: u64) -> Range<u64> {
    estimate.saturating_sub(1_500_000_000)..estimate.saturating_add(500_000_000)
}
/// How many of the generator's first outputs the first ISN seen is looked for among.
pub const FIRST_DRAWS: usize = 4;
/// How many outputs after the last ISN matched each next ISN is looked for among.
pub const SKIP: usize = 8;

/// smoltcp 0.14's generator (`src/rand.rs`): sPCG32, 64 bits of state, one 32-bit output
/// per step. TCP takes an ISN as one `rand_u32` (`socket/tcp.rs`, `random_seq_no`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spcg32(pub u64);

impl Spcg32 {
    pub fn next_u32(&mut self) -> u32 {
        const M: u64 = 0xbb2e_fcec_3c39_611d;
        const A: u64 = 0x7590_ef39;
        self.0 = self.0.wrapping_mul(M).wrapping_add(A);
        let shift = 29 - (self.0 >> 61);
        (self.0 >> shift) as u32
    }
}

/// The seed `runtime/src/net/stack.rs` gave smoltcp before commit cd05b75: the MAC and the
/// boot-relative time `ns` of the stack's creation, through splitmix64's finaliser.
pub fn old_seed(ns: u64, mac: [u8; 6]) -> u64 {
    let mut bytes = [0; 8];
    bytes[2..].copy_from_slice(&mac);
    let x = u64::from_be_bytes(bytes) ^ ns.rotate_left(24);
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What the predictor made of a run of ISNs.
#[derive(Debug, PartialEq, Eq)]
pub struct Prediction {
    /// Seeds in the window with the first ISN among their first outputs: the states the
    /// attacker holds after one ISN (of 2·10⁹ seeds, each with [`FIRST_DRAWS`] outputs,
    /// about two match by chance alone).
    pub candidates: usize,
    /// The indices of the ISNs predicted from those before them.
    pub predicted: Vec<usize>,
}

/// Searches `window` for a seed of `mac` whose outputs give `isns[0]`, then for each later
/// ISN checks whether some candidate's next [`SKIP`] outputs hold it; the candidates that
/// predicted it move on past it.
pub fn predict(isns: &[u32], mac: [u8; 6], window: Range<u64>) -> Prediction {
    let Some((&first, rest)) = isns.split_first() else {
        return Prediction { candidates: 0, predicted: Vec::new() };
    };
    let mut states = search(first, mac, window);
    let candidates = states.len();
    let mut predicted = Vec::new();
    for (i, &isn) in rest.iter().enumerate() {
        let hits: Vec<Spcg32> = states.iter().filter_map(|&state| find(state, isn, SKIP)).collect();
        if !hits.is_empty() {
            predicted.push(i + 1);
            states = hits;
        }
    }
    Prediction { candidates, predicted }
}

/// The generator after the output `isn`, if it is among the next `draws` outputs of `state`.
fn find(mut state: Spcg32, isn: u32, draws: usize) -> Option<Spcg32> {
    (0..draws).find_map(|_| (state.next_u32() == isn).then_some(state))
}

/// Every state, after the output `isn`, of the generators seeded the old way at a time in
/// `window` with `isn` among their first [`FIRST_DRAWS`] outputs. Split over the host's cores.
fn search(isn: u32, mac: [u8; 6], window: Range<u64>) -> Vec<Spcg32> {
    let threads = thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = (window.end - window.start).div_ceil(threads).max(1);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let start = window.start.saturating_add(t * chunk).min(window.end);
                let end = start.saturating_add(chunk).min(window.end);
                scope.spawn(move || {
                    (start..end)
                        .filter_map(|ns| find(Spcg32(old_seed(ns, mac)), isn, FIRST_DRAWS))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a search thread panicked")).collect()
    })
}

/// The MAC in a console line `… mac 00:16:3e:…`.
pub fn parse_mac(line: &str) -> Option<[u8; 6]> {
    let text = line.split("mac ").nth(1)?.get(..17)?;
    let mut mac = [0; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56];

    /// `count` ISNs as the old stack drew them: seeded at `ns`, the first output taken by
    /// the IPv4 identification, then one ISN per connection, with an extra draw after
    /// connection `extra_after`, which the predictor does not see.
    fn old_isns(ns: u64, count: usize, extra_after: usize) -> Vec<u32> {
        let mut rand = Spcg32(old_seed(ns, MAC));
        rand.next_u32();
        let mut isns = Vec::new();
        for i in 0..count {
            isns.push(rand.next_u32());
            if i == extra_after {
                rand.next_u32();
            }
        }
        isns
    }

    #[test]
    fn the_generator_is_smoltcps() {
        // smoltcp 0.14's sPCG32 by hand: state × M + A, the top 32 bits under 29 - top 3.
        let mut rand = Spcg32(1);
        let s = 0xbb2e_fcec_3c39_611du64.wrapping_add(0x7590_ef39);
        assert_eq!(rand.next_u32(), (s >> (29 - (s >> 61))) as u32);
        assert_eq!(rand.0, s);
    }

    #[test]
    fn isns_seeded_the_old_way_are_predicted_after_the_first() {
        // An odd time, not on any round number, within the window searched here.
        let ns = 187_654_321;
        let isns = old_isns(ns, 50, 20);
        let window = ns - 3_000_000..ns + 2_000_000;
        let prediction = predict(&isns, MAC, window);
        assert!(prediction.candidates >= 1);
        assert_eq!(prediction.predicted, (1..50).collect::<Vec<_>>());
    }

    #[test]
    fn isns_seeded_the_old_way_are_predicted_at_either_end_of_the_window() {
        let estimate = 16_717_702_773;
        let searched = window(estimate);
        assert_eq!(searched.end - searched.start, 2_000_000_000);
        for ns in [searched.start, searched.end - 1] {
            let isns = old_isns(ns, 3, 99);
            assert_eq!(predict(&isns, MAC, ns - 1_000..ns + 1).predicted, [1, 2]);
        }
    }

    #[test]
    fn isns_seeded_outside_the_window_or_for_another_mac_are_not_predicted() {
        let isns = old_isns(187_654_321, 20, 99);
        assert_eq!(predict(&isns, MAC, 0..187_000_000).predicted, Vec::<usize>::new());
        let other = [0x00, 0x16, 0x3e, 0x12, 0x34, 0x57];
        assert_eq!(predict(&isns, other, 187_000_000..188_000_000).predicted, Vec::<usize>::new());
    }

    #[test]
    fn reads_the_mac_of_the_console_line() {
        let line = "[INFO  mote::net::xen] net: vif 0 connected, mac 00:16:3e:0a:bc:01; rx checksum";
        assert_eq!(parse_mac(line), Some([0x00, 0x16, 0x3e, 0x0a, 0xbc, 0x01]));
        assert_eq!(parse_mac("net: vif 0 connected, mac 00:16:3e"), None);
    }
}
