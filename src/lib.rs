//! `harness`: a reproducible experiment harness for fast, semantically aware image retrieval on
//! CIFAR-100.
//!
//! Data flows one way, and no module imports from one later in this list:
//!
//! | module | role |
//! |---|---|
//! | [`store`] | file formats (npy, tables), atomic writes, checksums, fault injection; under everything |
//! | [`progress`] | the process's one set of progress bars on stderr |
//! | `simd` | run-time CPU feature level shared by the kernels |
//! | [`codes`] | the packed binary code format, written by embed and read by index |
//! | [`index`] | [`index::Method`], the one list of retrieval methods; exact, Hamming (`scan`: packed codes and the linear scan; `hamming`), re-rank (`rerank`), MIH and asymmetric search over plain slices; `kernels`; index files (`persist`) |
//! | [`config`] | the YAML schema, validation with line numbers, `base:` composition, command-line overrides, sweeps, config hashes |
//! | [`data`] | CIFAR-100 binary, WordNet hierarchy, USF norms, ImageNet labels; `fetch`: every file from its public source (resumable HTTP, a zip member reader, a legacy `torch.save` reader), verified by pinned sha256 |
//! | [`semantics`] | class similarity S and the Barz & Denzler class embedding |
//! | [`model`] | burn networks (compact CNN, AlexNet, the EfficientNet-Lite family (Lite0, Lite2), fused frozen inference) |
//! | [`train`] | the training loop (losses, optimiser, checkpoints) |
//! | [`embed`] | network outputs: embeddings, hash activations, codes, top classes |
//! | [`iwan`] | the image-word association network and its Dijkstra search; the report's own graph |
//! | [`eval`] | protocols, metrics (ours and the report's, HP curves), timing and seed statistics, evaluation runs, external rankings |
//! | [`report`] | tables, the report's published values, figures, `harness check` |
//! | [`artifacts`] | [`artifacts::RunLayout`], every path and JSON file of a run folder, with typed readers; what runs stored, for the runner, the server, the benches and the CLI |
//! | [`experiment`] | the runner: stage engine, cache keys, stage bodies, eval stage, rendering, `compare` |
//! | [`bench`] | every benchmark (`harness bench` search, scale, model and iwan) and the peers it launches |
//! | [`slurm`] | `harness run --slurm`: a sweep as a job array and an aggregation job |
//! | [`serve`] | the query page and its JSON API |
//! | [`cli`] | argument definitions and one function per command; `main.rs` is a thin shell |
//!
//! burn is reached only through [`model`], [`train`], [`embed`] and [`bench`]; indices and
//! metrics work on plain slices.

pub mod artifacts;
pub mod bench;
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
pub mod progress;
pub mod report;
pub mod semantics;
pub mod serve;
pub(crate) mod simd;
pub mod slurm;
pub mod store;
pub mod train;
