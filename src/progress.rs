//! Progress bars on stderr, all under one [`indicatif::MultiProgress`] so that the sweep bar,
//! the stage spinner and a stage's own bar (features, training epochs, embedding) stack as
//! separate lines and clear cleanly instead of overwriting each other.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::sync::OnceLock;

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(MultiProgress::new)
}

/// A bar of `len` steps drawn with the indicatif `template`.
pub fn bar(len: u64, template: &str) -> ProgressBar {
    let style =
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    multi().add(ProgressBar::new(len).with_style(style))
}

/// A ticking spinner showing `message`.
pub fn spinner(message: String) -> ProgressBar {
    let s = multi().add(ProgressBar::new_spinner());
    s.set_message(message);
    s.enable_steady_tick(std::time::Duration::from_millis(200));
    s
}

/// Prints `line` on stderr: above the bars while they are drawn, plainly otherwise (stderr not a
/// terminal, `--quiet`), so a warning is never lost.
pub fn println(line: &str) {
    let m = multi();
    if m.is_hidden() || m.println(line).is_err() {
        eprintln!("{line}");
    }
}
