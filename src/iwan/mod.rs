//! IWAN, the image-word association network (after Palumbo & Allasia): images anchored to
//! words, words to their free associates in the USF norms, retrieval by shortest path from the
//! query. Plain data structures; no burn.

pub mod annotate;
pub mod export;
pub mod graph;
pub mod report_graph;
pub mod words;
