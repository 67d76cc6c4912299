//! The verdicts: on each message (delivered, excused or lost) and on each routing
//! loop found (counted, described, and timed until it goes).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::Ipv6Addr;
use std::time::Duration;

use bytes::Bytes;
use mycelium_proto::time::Instant;
use mycelium_proto::wire::message::MessageId;

use super::churn::Reach;
use super::loops;
use super::report::{LoopCounts, MessageCounts};
use super::world::Outcome;
use crate::check::{LeafTransit, Loop};
use crate::network::{NodeIdx, Sim};

/// How long after its deadline a message is judged: its sender has reported it
/// delivered or failed by then.
pub const GRACE: Duration = Duration::from_secs(5);

/// Loops described in full among the failures (all are counted).
pub const LOOPS_DESCRIBED: u64 = 10;

/// Message failures listed at most (all are counted).
const MESSAGE_FAILURES_LISTED: usize = 40;

/// Why a message need not have arrived: the first thing that stood in its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Excuse {
    SenderDown,
    ReceiverDown,
    NoPath,
}

/// A message pushed, and what became of it.
#[derive(Debug)]
pub(super) struct Msg {
    from: NodeIdx,
    to: NodeIdx,
    id: MessageId,
    len: usize,
    digest: u64,
    pushed: Instant,
    deadline: Instant,
    /// The first excuse and when it arose.
    excuse: Option<(Excuse, Instant)>,
    received: u32,
    /// Arrived with another payload or at another node.
    corrupt: bool,
    /// Its sender was told it was delivered.
    confirmed: bool,
    /// Its sender was told it failed.
    failed: bool,
    judged: bool,
}

impl Msg {
    /// Message `id` of `data` from `from` to `to`, pushed at `now` and tried for
    /// `try_for`.
    pub(super) fn new(
        from: NodeIdx,
        to: NodeIdx,
        id: MessageId,
        data: &Bytes,
        now: Instant,
        try_for: Duration,
    ) -> Self {
        Self {
            from,
            to,
            id,
            len: data.len(),
            digest: digest(data),
            pushed: now,
            deadline: now + try_for,
            excuse: None,
            received: 0,
            corrupt: false,
            confirmed: false,
            failed: false,
            judged: false,
        }
    }
}

fn digest(b: &Bytes) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Every message of the run, judged [`GRACE`] after its deadline.
pub(super) struct MessageJudge {
    seed: u64,
    addr_node: HashMap<Ipv6Addr, NodeIdx>,
    /// Per node: whether it is a leaf.
    leaves: Vec<bool>,
    msgs: Vec<Msg>,
    /// (sender, id) → message, while it is being judged or could still arrive.
    by_id: HashMap<(NodeIdx, MessageId), usize>,
    /// Messages not judged yet, by when they are judged.
    pending: BTreeMap<(Instant, usize), ()>,
    pub(super) counts: MessageCounts,
}

impl MessageJudge {
    /// No message yet; `addr_node` maps each node's address to the node, `leaves`
    /// tells the leaves.
    pub(super) fn new(seed: u64, addr_node: HashMap<Ipv6Addr, NodeIdx>, leaves: Vec<bool>) -> Self {
        Self {
            seed,
            addr_node,
            leaves,
            msgs: Vec::new(),
            by_id: HashMap::new(),
            pending: BTreeMap::new(),
            counts: MessageCounts::default(),
        }
    }

    /// Takes a message just pushed; `separated` if no path of working links
    /// joins its pair now.
    pub(super) fn sent(&mut self, mut m: Msg, separated: bool) {
        m.excuse = separated.then_some((Excuse::NoPath, m.pushed));
        let i = self.msgs.len();
        self.by_id.insert((m.from, m.id), i);
        self.pending.insert((m.deadline + GRACE, i), ());
        self.msgs.push(m);
        self.counts.sent += 1;
    }

    /// Some message is not judged yet.
    pub(super) fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// When the next message is judged.
    pub(super) fn next_verdict(&self) -> Option<Instant> {
        self.pending.keys().next().map(|&(t, _)| t)
    }

    /// After a failure or repair: excuses the messages in their window whose
    /// sender or receiver is down, or whose pair `reach` does not join.
    pub(super) fn excuse_separated(&mut self, now: Instant, sim: &Sim, reach: &Reach) {
        let open: Vec<usize> = self.pending.keys().map(|&(_, i)| i).collect();
        for i in open {
            let m = &mut self.msgs[i];
            if m.excuse.is_some() || now > m.deadline {
                continue;
            }
            let excuse = if !sim.is_up(m.from) {
                Some(Excuse::SenderDown)
            } else if !sim.is_up(m.to) {
                Some(Excuse::ReceiverDown)
            } else if !reach.joined(m.from, m.to) {
                Some(Excuse::NoPath)
            } else {
                None
            };
            m.excuse = excuse.map(|e| (e, now));
        }
    }

    /// Notes what the buses reported: arrivals (checked against what was sent)
    /// and what senders were told.
    pub(super) fn record(
        &mut self,
        outcomes: Vec<(Outcome, Option<Bytes>)>,
        failures: &mut Vec<String>,
    ) {
        for (o, payload) in outcomes {
            match o {
                Outcome::Received { to, src, id } => {
                    let Some(&from) = self.addr_node.get(&src) else {
                        continue;
                    };
                    let Some(&i) = self.by_id.get(&(from, id)) else {
                        failures.push(format!(
                            "an unknown message {id} arrived at {to} from {from}"
                        ));
                        continue;
                    };
                    let m = &mut self.msgs[i];
                    m.received += 1;
                    if m.to != to || payload.as_ref().map(digest) != Some(m.digest) {
                        m.corrupt = true;
                    }
                    if m.judged && (m.received > 1 || m.corrupt) {
                        if let Some(why) = self.why_failed(i) {
                            self.counts.lost += 1;
                            list(failures, why);
                        }
                    }
                }
                Outcome::Delivered { from, id } => {
                    if let Some(&i) = self.by_id.get(&(from, id)) {
                        self.msgs[i].confirmed = true;
                    }
                }
                Outcome::Failed { from, id } => {
                    if let Some(&i) = self.by_id.get(&(from, id)) {
                        self.msgs[i].failed = true;
                    }
                }
            }
        }
    }

    /// Judges the messages due by `now`.
    pub(super) fn judge_due(&mut self, now: Instant, failures: &mut Vec<String>) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (_, i) = *entry.key();
            entry.remove();
            self.judge(i, failures);
        }
    }

    /// At the end of the run: the messages not judged yet count as unjudged.
    pub(super) fn close(&mut self) {
        let left: Vec<usize> = self.pending.keys().map(|&(_, i)| i).collect();
        self.pending.clear();
        for i in left {
            self.counts.unjudged += 1;
            self.msgs[i].judged = true;
        }
    }

    /// Why a message counts as a failure, if it does.
    fn why_failed(&self, i: usize) -> Option<String> {
        let m = &self.msgs[i];
        let what = if m.corrupt {
            "arrived corrupted or at the wrong node"
        } else if m.excuse.is_some() {
            return None;
        } else if m.received == 0 {
            "LOST: had time to arrive and did not"
        } else if m.received > 1 {
            "arrived more than once"
        } else if !m.confirmed {
            "arrived but its sender was not told"
        } else {
            return None;
        };
        let leaf = |n: NodeIdx| if self.leaves[n] { " (a leaf)" } else { "" };
        Some(format!(
            "message {} ({} bytes) from node {}{} to node {}{}, pushed at {:?}, deadline {:?}: \
             {what} (received {} times, sender reported failed: {}); seed {}",
            m.id,
            m.len,
            m.from,
            leaf(m.from),
            m.to,
            leaf(m.to),
            m.pushed,
            m.deadline,
            m.received,
            m.failed,
            self.seed
        ))
    }

    fn judge(&mut self, i: usize, failures: &mut Vec<String>) {
        self.msgs[i].judged = true;
        if let Some(why) = self.why_failed(i) {
            self.counts.lost += 1;
            list(failures, why);
            return;
        }
        let m = &self.msgs[i];
        if m.received == 1 {
            self.counts.delivered += 1;
            self.counts.leaf_delivered += u64::from(self.leaves[m.from] || self.leaves[m.to]);
            self.counts.confirmed += u64::from(m.confirmed);
            self.counts.excused_but_delivered += u64::from(m.excuse.is_some());
            return;
        }
        match m.excuse.map(|(e, _)| e) {
            Some(Excuse::SenderDown) => self.counts.excused_sender_down += 1,
            Some(Excuse::ReceiverDown) => self.counts.excused_receiver_down += 1,
            Some(Excuse::NoPath) => self.counts.excused_no_path += 1,
            // why_failed has counted it.
            None => {}
        }
    }
}

/// Lists a message failure while the list is short (they are counted apart).
fn list(failures: &mut Vec<String>, why: String) {
    if failures.len() < MESSAGE_FAILURES_LISTED {
        failures.push(why);
    }
}

/// A loop found and not yet gone.
struct OpenLoop {
    l: Loop,
    since: Instant,
    step: u64,
    /// Its entry in the failures, if described there.
    failure: Option<usize>,
}

/// Every routing loop of the run: each one a failure, timed until it goes.
pub(super) struct LoopJudge {
    seed: u64,
    /// Describe a loop with the control TLVs behind it (the simulator traces them).
    trace: bool,
    open: Vec<OpenLoop>,
    counts: LoopCounts,
}

impl LoopJudge {
    /// No loop yet.
    pub(super) fn new(seed: u64, trace: bool) -> Self {
        Self {
            seed,
            trace,
            open: Vec::new(),
            counts: LoopCounts::default(),
        }
    }

    /// After a check: closes the loops gone, and opens (and lists) those `found`
    /// that are new.
    pub(super) fn track(&mut self, sim: &Sim, found: Vec<Loop>, failures: &mut Vec<String>) {
        let now = sim.now();
        let step = sim.stats().steps;
        let counts = &mut self.counts;
        self.open.retain(|o| {
            if loops::still_loops(sim, &o.l) {
                return true;
            }
            let lasted = now - o.since;
            counts.longest = counts.longest.max(lasted);
            counts.longest_steps = counts.longest_steps.max(step - o.step);
            counts.total_time += lasted;
            if lasted.is_zero() {
                counts.instantaneous += 1;
            }
            if let Some(f) = o.failure {
                failures[f] += &format!(
                    "  -> the loop lasted {:.3} s ({} steps), until {now:?}",
                    lasted.as_secs_f64(),
                    step - o.step
                );
            }
            false
        });
        for mut l in found {
            canonical(&mut l);
            if self.open.iter().any(|o| o.l == l) {
                continue;
            }
            self.counts.found += 1;
            let failure = if self.counts.found <= LOOPS_DESCRIBED {
                failures.push(self.describe(sim, &l));
                Some(failures.len() - 1)
            } else {
                None
            };
            self.open.push(OpenLoop {
                l,
                since: now,
                step,
                failure,
            });
        }
    }

    /// A node routing through a leaf to another destination: a failure, listed
    /// while few (all are counted).
    pub(super) fn leaf_transit(&mut self, sim: &Sim, t: LeafTransit, failures: &mut Vec<String>) {
        self.counts.leaf_transits += 1;
        if self.counts.leaf_transits <= LOOPS_DESCRIBED {
            failures.push(format!(
                "LEAF TRANSIT (seed {}, step {}, at {:?}): node {} routes to node {} through \
                 leaf {}",
                self.seed,
                sim.stats().steps,
                sim.now(),
                t.node,
                t.destination,
                t.leaf
            ));
        }
    }

    /// A loop the full check found: `None` if a loop towards its destination is
    /// open already, else the failure that the incremental check missed it.
    pub(super) fn missed(&self, sim: &Sim, mut l: Loop) -> Option<String> {
        canonical(&mut l);
        if self.open.iter().any(|o| o.l.destination == l.destination) {
            return None;
        }
        Some(format!(
            "the full check found a loop the incremental one missed: {}",
            self.describe(sim, &l)
        ))
    }

    /// The counts so far, with the loops open now as open at the end.
    pub(super) fn counts(&self) -> LoopCounts {
        LoopCounts {
            open_at_end: self.open.len() as u64,
            ..self.counts
        }
    }

    /// A loop as a failure: where and when, and with tracing the last updates and
    /// seqno requests for its destination to or from its nodes.
    fn describe(&self, sim: &Sim, l: &Loop) -> String {
        let mut trace = String::new();
        if self.trace {
            let subnet = mycelium_proto::Subnet::v6_64(sim.address(l.destination));
            let lines: Vec<String> = sim
                .trace()
                .iter()
                .filter(|d| l.nodes.contains(&d.from) || l.nodes.contains(&d.to))
                .filter_map(|d| match d.tlv {
                    mycelium_proto::wire::Tlv::Update(u) if u.subnet == subnet => Some(format!(
                        "    {:?} {} -> {}: update seqno {} metric {} router ..{}\n",
                        d.at,
                        d.from,
                        d.to,
                        u.seqno,
                        u.metric,
                        &u.router_id.to_string()[65..]
                    )),
                    mycelium_proto::wire::Tlv::SeqnoRequest(r) if r.prefix == subnet => {
                        Some(format!(
                            "    {:?} {} -> {}: seqno request {} router ..{}\n",
                            d.at,
                            d.from,
                            d.to,
                            r.seqno,
                            &r.router_id.to_string()[65..]
                        ))
                    }
                    _ => None,
                })
                .collect();
            trace = lines[lines.len().saturating_sub(60)..].concat();
        }
        format!(
            "LOOP (seed {}, step {}, {} at {:?}): {}{trace}",
            self.seed,
            sim.stats().steps,
            if sim.is_up(l.destination) {
                "destination up"
            } else {
                "destination down"
            },
            sim.now(),
            l.describe(sim)
        )
    }
}

/// Starts the cycle at its smallest node, so one loop found twice compares equal.
fn canonical(l: &mut Loop) {
    if let Some(min) = l.nodes.iter().position(|n| Some(n) == l.nodes.iter().min()) {
        l.nodes.rotate_left(min);
    }
}
