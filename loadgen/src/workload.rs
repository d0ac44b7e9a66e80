//! Per-session operation streams and the open-loop schedule.
//!
//! Each session derives its own random stream from the run seed and its session number, so a
//! run is reproducible whatever the number of executors and however the sessions interleave
//! in time. The kinds follow the Add:Query weights in a fixed pattern (1:1 alternates Add and
//! Query, as the Copycat seed clients do); only tags are random. A Query reads the tag of the
//! session's latest Add, so with read-your-writes it must see that Add. A session that has
//! not added yet draws a tag.
//!
//! Ids are unique per run: `(session << 40) | n`, with n counting the session's Adds from 1.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use crate::args::{Mix, TagDistribution, WorkloadArgs};
use crate::history::OpKind;

/// One operation a session will send.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedOp {
    pub kind: OpKind,
    pub tag: String,
    /// Id of an Add.
    pub id: Option<u64>,
    pub payload: Vec<u8>,
}

enum TagPicker {
    Uniform(u64),
    Zipfian(Zipf<f64>),
}

impl TagPicker {
    fn pick(&self, rng: &mut StdRng) -> u64 {
        match self {
            TagPicker::Uniform(n) => rng.random_range(0..*n),
            // Zipf samples ranks 1..=n as floats; rank 1 (the most frequent) is tag t0.
            TagPicker::Zipfian(zipf) => zipf.sample(rng) as u64 - 1,
        }
    }
}

/// Derive a session's seed from the run seed (splitmix64 of both), so neighbouring sessions
/// get unrelated streams.
pub fn session_seed(run_seed: u64, session: u32) -> u64 {
    let mut z = run_seed ^ (u64::from(session) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Deterministic operation stream of one session.
pub struct SessionStream {
    session: u32,
    rng: StdRng,
    mix: Mix,
    tags: TagPicker,
    payload: Vec<u8>,
    generated: u64,
    adds: u64,
    last_tag: Option<u64>,
}

impl SessionStream {
    pub fn new(args: &WorkloadArgs, run_seed: u64, session: u32) -> Result<Self, String> {
        let mut rng = StdRng::seed_from_u64(session_seed(run_seed, session));
        let tags = match args.tag_distribution {
            TagDistribution::Uniform => TagPicker::Uniform(args.tags),
            TagDistribution::Zipfian(s) => {
                TagPicker::Zipfian(Zipf::new(args.tags as f64, s).map_err(|e| {
                    format!("invalid zipfian distribution over {} tags: {e}", args.tags)
                })?)
            }
        };

        // One random payload per session, cloned into every Add: its content is ballast, and
        // drawing fresh bytes for every request would cost more than sending them.
        let mut payload = vec![0u8; args.payload_bytes];
        rng.fill(payload.as_mut_slice());

        Ok(SessionStream {
            session,
            rng,
            mix: args.mix,
            tags,
            payload,
            generated: 0,
            adds: 0,
            last_tag: None,
        })
    }

    fn next_kind(&self) -> OpKind {
        let cycle = u64::from(self.mix.add) + u64::from(self.mix.query);
        if (self.generated * u64::from(self.mix.add)) % cycle < u64::from(self.mix.add) {
            OpKind::Add
        } else {
            OpKind::Query
        }
    }

    pub fn next_op(&mut self) -> PlannedOp {
        let kind = self.next_kind();
        self.generated += 1;

        match kind {
            OpKind::Add => {
                let tag = self.tags.pick(&mut self.rng);
                self.last_tag = Some(tag);
                self.adds += 1;
                PlannedOp {
                    kind,
                    tag: format!("t{tag}"),
                    id: Some((u64::from(self.session) << 40) | self.adds),
                    payload: self.payload.clone(),
                }
            }
            OpKind::Query => {
                let tag = match self.last_tag {
                    Some(tag) => tag,
                    None => self.tags.pick(&mut self.rng),
                };
                PlannedOp {
                    kind,
                    tag: format!("t{tag}"),
                    id: None,
                    payload: Vec::new(),
                }
            }
        }
    }
}

/// Fixed open-loop schedule: request j of the whole run (counting across sessions) is due at
/// `start + j / rate`, and session k sends requests k, k + S, k + 2S, ... of S sessions, which
/// interleaves the sessions evenly as the seed cluster's clients were.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    sessions: u32,
    session: u32,
}

impl Schedule {
    pub fn new(start: Instant, rate: f64, sessions: u32, session: u32) -> Self {
        Schedule {
            start,
            rate,
            sessions,
            session,
        }
    }

    /// Intended send time of the session's `n`-th request (from 0).
    pub fn intended(&self, n: u64) -> Instant {
        let global = n as f64 * f64::from(self.sessions) + f64::from(self.session);
        self.start + Duration::from_secs_f64(global / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mix_alternates() {
        let args = WorkloadArgs::default();
        let mut stream = SessionStream::new(&args, 7, 2).unwrap();
        let ops: Vec<_> = (0..6).map(|_| stream.next_op()).collect();
        let kinds: Vec<_> = ops.iter().map(|op| op.kind).collect();
        assert_eq!(
            kinds,
            [
                OpKind::Add,
                OpKind::Query,
                OpKind::Add,
                OpKind::Query,
                OpKind::Add,
                OpKind::Query
            ]
        );
        assert_eq!(ops[0].id, Some((2 << 40) | 1));
        assert_eq!(ops[2].id, Some((2 << 40) | 2));
        assert_eq!(ops[1].tag, ops[0].tag, "a query reads the tag just added");
        assert_eq!(ops[0].payload.len(), args.payload_bytes);
    }

    #[test]
    fn mix_three_to_one() {
        let args = WorkloadArgs {
            mix: Mix { add: 3, query: 1 },
            ..WorkloadArgs::default()
        };
        let mut stream = SessionStream::new(&args, 1, 0).unwrap();
        let adds = (0..400)
            .filter(|_| stream.next_op().kind == OpKind::Add)
            .count();
        assert_eq!(adds, 300);
    }

    #[test]
    fn streams_are_deterministic_per_session() {
        let args = WorkloadArgs {
            tag_distribution: TagDistribution::Zipfian(0.99),
            ..WorkloadArgs::default()
        };
        let tags = |seed, session| {
            let mut stream = SessionStream::new(&args, seed, session).unwrap();
            (0..50).map(|_| stream.next_op().tag).collect::<Vec<_>>()
        };
        assert_eq!(tags(42, 1), tags(42, 1));
        assert_ne!(tags(42, 1), tags(42, 2));
        assert_ne!(tags(42, 1), tags(43, 1));
    }

    #[test]
    fn zipfian_favours_first_tag() {
        let args = WorkloadArgs {
            tags: 100,
            tag_distribution: TagDistribution::Zipfian(1.2),
            mix: Mix { add: 1, query: 0 },
            ..WorkloadArgs::default()
        };
        let mut stream = SessionStream::new(&args, 5, 0).unwrap();
        let mut counts = [0u32; 100];
        for _ in 0..10_000 {
            let op = stream.next_op();
            let tag: usize = op.tag[1..].parse().unwrap();
            counts[tag] += 1;
        }
        assert!(counts[0] > counts[1]);
        assert!(counts[1] > counts[50]);
    }

    #[test]
    fn schedule_interleaves_sessions() {
        let start = Instant::now();
        let s0 = Schedule::new(start, 1000.0, 3, 0);
        let s2 = Schedule::new(start, 1000.0, 3, 2);
        assert_eq!(s0.intended(0), start);
        assert_eq!(s0.intended(1) - start, Duration::from_millis(3));
        assert_eq!(s2.intended(1) - start, Duration::from_millis(5));
    }
}
