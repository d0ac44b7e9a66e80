//! ringraft: a thread-per-core Raft server, a load generator and a benchmark harness.

pub mod state_machine;
