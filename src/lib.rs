//! `harness`: a reproducible experiment harness for fast, semantically aware image retrieval on
//! CIFAR-100.
//!
//! Data flows one way: [`config`] -> [`data`] + [`semantics`] -> [`model`] / [`train`] ->
//! [`embed`] (writing [`codes`]) -> [`index`] + [`iwan`] -> [`eval`] -> [`report`], driven
//! by [`experiment`]; [`artifacts`] reads back what runs stored, for the orchestrator, the
//! query server ([`serve`]) and the CLI. [`store`] (file formats, atomic writes) sits under
//! all of them. The binary is a thin shell over [`cli`].

pub mod artifacts;
pub mod cli;
pub mod codes;
pub mod config;
pub mod data;
pub mod embed;
pub mod eval;
pub mod experiment;
pub mod index;
pub mod iwan;
pub mod model;
pub mod report;
pub mod semantics;
pub mod serve;
pub(crate) mod simd;
pub mod store;
pub mod throughput;
pub mod train;
