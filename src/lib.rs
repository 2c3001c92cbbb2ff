//! `harness`: a reproducible experiment harness for fast, semantically aware image retrieval on
//! CIFAR-100.
//!
//! Data flows one way: [`config`] -> [`data`] -> (model, training, embedding) -> indices ->
//! evaluation -> reports, driven by [`experiment`]. The binary is a thin shell over [`cli`].

pub mod cli;
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
pub mod store;
pub mod throughput;
pub mod train;
