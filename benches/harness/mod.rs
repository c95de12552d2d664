//! What the side-by-side benchmarks share: the two ways of running a NATS server that they
//! compare (natsup, and the tutorial's steps as a script), and the NATS clients that watch
//! what each way does to the people connected.
//!
//! Both deployments go to the same real sshd on 127.0.0.1 and the same Docker engine, so the
//! figures differ only by what each way does.

#![allow(dead_code)] // each benchmark uses its own part of the harness

pub mod clients;
pub mod natsup;
pub mod tutorial;

use std::time::Duration;

/// The median of some durations (the benchmarks run each case a few times, interleaved).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// natsup's figure over the baseline's, as the README quotes it.
pub fn ratio(ours: Duration, theirs: Duration) -> String {
    format!("{:.2}×", ours.as_secs_f64() / theirs.as_secs_f64())
}
