//! Class similarity and class embeddings built from the real hierarchy.

use crate::common::data_root;
use harness::data::hierarchy::Hierarchy;
use harness::semantics::{SimilarityMatrix, class_embedding, max_abs_gram_error};

fn similarity() -> SimilarityMatrix {
    let root = data_root();
    let names = harness::data::cifar::load_names(&root.cifar_dir()).unwrap();
    let h = Hierarchy::load(&root.hierarchy_dir(), &names.fine).unwrap();
    SimilarityMatrix::from_hierarchy(&h).unwrap()
}

#[test]
fn unit_sphere_embedding_reproduces_the_similarities() {
    let s = similarity();
    assert_eq!(s.n(), 100);
    // Similarities are 1 - j/8 for j in 0..=8.
    for &v in s.values() {
        let j = (1.0 - v) * 8.0;
        assert!(
            (j - j.round()).abs() < 1e-12 && (0.0..=8.0).contains(&j),
            "{v}"
        );
    }
    let c = class_embedding(&s, 100).unwrap();
    assert!(max_abs_gram_error(&c, &s) < 1e-6);
    for u in 0..100 {
        let norm: f64 = c.row(u).iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-9);
    }
}

#[test]
fn low_rank_embedding_has_unit_rows_and_improves_with_d() {
    let s = similarity();
    let err = |d| max_abs_gram_error(&class_embedding(&s, d).unwrap(), &s);
    let (e16, e48, e99) = (err(16), err(48), err(99));
    assert!(e16 >= e48 && e48 >= e99, "{e16} {e48} {e99}");
    let c = class_embedding(&s, 16).unwrap();
    assert!((0..100).all(|u| (c.row(u).iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-9));
}
