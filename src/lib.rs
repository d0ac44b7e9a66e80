//! ringraft: a thread-per-core Raft server, a load generator and a benchmark harness.

pub mod harness;
pub mod raft;
pub mod replay;
pub mod server;
pub mod state_machine;
