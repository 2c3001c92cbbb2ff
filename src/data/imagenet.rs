//! ImageNet-1k class names (`imagenet/imagenet_synsets.txt`: `index<TAB>wnid<TAB>name`), the
//! labels of the pretrained classifier that IWAN's `imagenet` word model uses.

use super::{DataError, DataRoot, read_text};

/// Number of ImageNet-1k classes.
pub const CLASSES: usize = 1000;

/// The 1,000 class names in index order.
pub fn load_names(root: &DataRoot) -> Result<Vec<String>, DataError> {
    let path = root.path.join("imagenet/imagenet_synsets.txt");
    let text = read_text(&path)?;
    let mut names = Vec::with_capacity(CLASSES);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            [idx, _wnid, name] if idx.trim().parse::<usize>() == Ok(names.len()) => {
                names.push(name.trim().to_string())
            }
            _ => {
                return Err(DataError::invalid(
                    &path,
                    format!(
                        "line {}: expected `{}<TAB>wnid<TAB>name`, got `{line}`",
                        i + 1,
                        names.len()
                    ),
                ));
            }
        }
    }
    if names.len() != CLASSES {
        return Err(DataError::invalid(
            &path,
            format!("{} classes, expected {CLASSES}", names.len()),
        ));
    }
    Ok(names)
}
