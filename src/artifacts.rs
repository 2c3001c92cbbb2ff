//! What the harness reads back rather than computes: a run's stored embed outputs
//! (`embed/{embeddings,activations,codes}/<split>.npy`), and the inputs every stage derives
//! from the data root (the class similarity `S` and class embedding `C` from the hierarchy, the
//! pretrained weights' path). The orchestrator ([`crate::experiment`]), the query server and
//! the CLI all read through here, so none of them reaches into another's internals.

use crate::config::{Encoder, ModelConfig};
use crate::data::cifar::{LabelNames, SplitName};
use crate::data::hierarchy::Hierarchy;
use crate::data::{DataError, DataRoot};
use crate::eval::retrieval::SplitView;
use crate::semantics::{SemanticsError, SimilarityMatrix, class_embedding};
use crate::store::{self, StoreError, npy};
use std::path::{Path, PathBuf};

/// Why a stored artifact or a derived input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The data root's files could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The class similarity or embedding could not be built.
    #[error(transparent)]
    Semantics(#[from] SemanticsError),
    /// A file could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `.npy` file is malformed.
    #[error("{path}: {source}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: npy::NpyError,
    },
    /// The three files of a split disagree on the number of images.
    #[error("{dir}: embeddings, activations and codes hold {counts:?} rows")]
    RowCounts {
        /// The embed folder.
        dir: PathBuf,
        /// Rows of each file, in that order.
        counts: [usize; 3],
    },
}

/// One split's embed outputs, as read back from the `.npy` files.
#[derive(Debug, Clone)]
pub struct StoredEmbedding {
    /// `n x d` embeddings.
    pub embeddings: Vec<f32>,
    /// Embedding dimension `d`.
    pub d: usize,
    /// `n x h` hash-layer activations.
    pub activations: Vec<f32>,
    /// Hash bits `h`.
    pub h: usize,
    /// `n x ceil(h/64)` packed codes (see [`crate::codes`]).
    pub codes: Vec<u64>,
}

impl StoredEmbedding {
    /// Images stored.
    pub fn rows(&self) -> usize {
        self.embeddings.len() / self.d.max(1)
    }

    /// Row `i` as (embedding, packed code, activations).
    pub fn row(&self, i: usize) -> (&[f32], &[u64], &[f32]) {
        let w = self.codes.len() / self.rows().max(1);
        (
            &self.embeddings[i * self.d..(i + 1) * self.d],
            &self.codes[i * w..(i + 1) * w],
            &self.activations[i * self.h..(i + 1) * self.h],
        )
    }

    /// A view with the split's labels (the first `n` of them, `n` = rows stored).
    pub fn view<'a>(&'a self, labels: &'a [u8]) -> SplitView<'a> {
        let n = self.rows();
        SplitView {
            embeddings: &self.embeddings,
            d: self.d,
            activations: &self.activations,
            codes: &self.codes,
            h: self.h,
            labels: &labels[..n.min(labels.len())],
        }
    }
}

/// Reads `split`'s embeddings, activations and codes from an embed folder.
///
/// # Errors
/// [`ArtifactError`] naming the file that is missing or malformed, or the folder whose files
/// disagree on the number of images.
pub fn load_embedded(embed_dir: &Path, split: SplitName) -> Result<StoredEmbedding, ArtifactError> {
    let f = format!("{split}.npy");
    let read = |sub: &str| -> Result<Vec<u8>, ArtifactError> {
        Ok(store::read(&embed_dir.join(sub).join(&f))?)
    };
    let npy_err = |sub: &str| {
        let path = embed_dir.join(sub).join(&f);
        move |source| ArtifactError::Npy { path, source }
    };
    let (n, d, embeddings) = npy::read_f32(&read("embeddings")?).map_err(npy_err("embeddings"))?;
    let (n2, h, activations) =
        npy::read_f32(&read("activations")?).map_err(npy_err("activations"))?;
    let (n3, _, codes) = npy::read_u64(&read("codes")?).map_err(npy_err("codes"))?;
    if n != n2 || n != n3 {
        return Err(ArtifactError::RowCounts {
            dir: embed_dir.to_path_buf(),
            counts: [n, n2, n3],
        });
    }
    Ok(StoredEmbedding {
        embeddings,
        d,
        activations,
        h,
        codes,
    })
}

/// The fine class names and Barz & Denzler's class similarity `S` from the hierarchy.
///
/// # Errors
/// [`ArtifactError::Data`] or [`ArtifactError::Semantics`] for unreadable or invalid files.
pub fn class_similarity(root: &DataRoot) -> Result<(LabelNames, SimilarityMatrix), ArtifactError> {
    let names = crate::data::cifar::load_names(&root.cifar_dir())?;
    let hierarchy = Hierarchy::load(&root.hierarchy_dir(), &names.fine)?;
    let s = SimilarityMatrix::from_hierarchy(&hierarchy)?;
    Ok((names, s))
}

/// The class embedding `C` of dimension `d` as f32, row-major `classes x d`.
///
/// # Errors
/// As [`class_similarity`], or [`ArtifactError::Semantics`] for an invalid `d`.
pub fn class_embedding_f32(root: &DataRoot, d: usize) -> Result<Vec<f32>, ArtifactError> {
    let (_, s) = class_similarity(root)?;
    Ok(class_embedding(&s, d)?.to_f32())
}

/// The EfficientNet-Lite0 ImageNet weights under the data root.
pub fn default_efficientnet_weights(root: &DataRoot) -> PathBuf {
    root.path.join("pretrained/efficientnet_lite0.safetensors")
}

/// The weights file a trained encoder starts from: `model.weights`, else the shipped
/// EfficientNet-Lite0 weights for that encoder; AlexNet without `model.weights` trains from
/// scratch.
pub fn pretrained_weights(root: &DataRoot, model: &ModelConfig) -> Option<PathBuf> {
    match model.encoder {
        Encoder::CifarCnn => None,
        Encoder::EfficientnetLite0 => Some(
            model
                .weights
                .clone()
                .unwrap_or_else(|| default_efficientnet_weights(root)),
        ),
        Encoder::Alexnet => model.weights.clone(),
    }
}
