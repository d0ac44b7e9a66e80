//! ringraft-loadgen: a client of the ringraft session protocol and a load generator that
//! replays the interleaved Add/Query session workload of a Copycat deployment.

pub mod history;
