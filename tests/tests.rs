//! Integration tests: one binary, one module per area. Every metric or count checked here comes
//! from the real data under `../shared/data` (or `$HARNESS_DATA`).

mod common;

mod architecture;
mod bad_input;
mod cli;
mod data;
mod faults;
mod fetch;
mod gpu_check;
mod index;
mod iwan;
mod report_metrics;
mod semantics;
mod serve;
mod train;
#[cfg(feature = "wgpu")]
mod wgpu;
