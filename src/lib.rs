//! ringraft: a thread-per-core Raft server, a load generator and a benchmark harness.

pub mod raft;
pub mod state_machine;
pub mod replay;
pub mod harness;
pub mod server;
