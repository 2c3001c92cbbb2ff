//! The loaders on the real files: counts, first records, hierarchy shape, USF values.

use crate::common::data_root;
use harness::data::cifar::{Cifar100, IMAGE_BYTES, SplitName};
use harness::data::hierarchy::Hierarchy;
use harness::data::usf::UsfNorms;

#[test]
fn cifar100_counts_labels_and_checksums() {
    let root = data_root();
    let cifar = Cifar100::load(&root, true).unwrap();
    assert_eq!(cifar.train.len(), 50_000);
    assert_eq!(cifar.test.len(), 10_000);
    assert!(cifar.train.fine_counts().iter().all(|&c| c == 500));
    assert!(cifar.test.fine_counts().iter().all(|&c| c == 100));
    assert!(cifar.train.coarse_counts().iter().all(|&c| c == 2500));
    // First records, as listed in cifar-100-binary/SOURCE.txt.
    assert_eq!((cifar.train.fine[0], cifar.train.coarse[0]), (19, 11));
    assert_eq!((cifar.test.fine[0], cifar.test.coarse[0]), (49, 10));
    assert_eq!((cifar.test.fine[1], cifar.test.coarse[1]), (33, 10));
    // train[0] pixels start 255,255,255 (R plane) and end 10,59,79 (B plane), per SOURCE.txt.
    let img = cifar.train.image(0);
    assert_eq!(img.len(), IMAGE_BYTES);
    assert_eq!(&img[..3], &[255, 255, 255]);
    assert_eq!(&img[3069..], &[10, 59, 79]);
    assert!(cifar.train.checksum_matches() && cifar.test.checksum_matches());
    assert_eq!(cifar.names.fine[19], "cattle");
    assert_eq!(cifar.names.coarse[11], "large_omnivores_and_herbivores");
    assert_eq!(cifar.split(SplitName::Test).name, SplitName::Test);
}

#[test]
fn hierarchy_has_root_108_and_height_8() {
    let root = data_root();
    let names = harness::data::cifar::load_names(&root.cifar_dir()).unwrap();
    let h = Hierarchy::load(&root.hierarchy_dir(), &names.fine).unwrap();
    assert_eq!(h.root(), 108);
    assert_eq!(h.name(108), "entity");
    assert_eq!(h.max_height(), 8);
    assert_eq!(h.n_leaves(), 100);
    assert_eq!(h.len(), 163);
    // Every leaf has height 0; similarity of a class with itself is 1.
    assert!((0..100).all(|c| h.height(c) == 0 && h.similarity(c, c) == 1.0));
}

#[test]
fn usf_norms_rows_and_dog_cat() {
    let usf = UsfNorms::load(&data_root().usf_file()).unwrap();
    assert_eq!(usf.rows.len(), 72_176);
    let dc = usf.get("DOG", "CAT").unwrap();
    assert_eq!(dc.fsg, Some(0.667));
    assert_eq!(dc.cue, "dog");
    assert!(
        usf.rows
            .iter()
            .all(|r| r.cue == r.cue.to_lowercase() && r.target == r.target.to_lowercase())
    );
}
