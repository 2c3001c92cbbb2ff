//! `scripts/gpu_check.sh` before it needs a GPU: it refuses to start, naming what is missing,
//! on this machine's real harness binary, with hand-made `/proc` and `/dev` trees (the
//! script's `GPU_CHECK_PROC` / `GPU_CHECK_DEV`) and a failing `nvidia-smi` first on `PATH`, so
//! the result does not depend on the machine the tests run on. (The checks that need a GPU run
//! only on one: docs/backends.md.)

use std::path::Path;
use std::process::Command;

/// A bundle folder with a MANIFEST built for CUDA 12.8, an empty data root, fake `/proc`,
/// `/dev` and `nvidia-smi`; returns (exit code, stderr).
fn gpu_check(driver: Option<&str>, node: bool, visible: Option<&str>) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let p = |rel: &str| tmp.path().join(rel);
    for dir in [
        "bundle",
        "data/cifar-100-binary",
        "proc",
        "dev",
        "bin",
        "out",
    ] {
        std::fs::create_dir_all(p(dir)).unwrap();
    }
    std::fs::write(p("bundle/MANIFEST"), "cuda_version=12080\n").unwrap();
    let smi = p("bin/nvidia-smi");
    std::fs::write(&smi, "#!/bin/sh\nexit 9\n").unwrap();
    let mut mode = std::fs::metadata(&smi).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&smi, mode).unwrap();
    if let Some(version) = driver {
        std::fs::create_dir_all(p("proc/driver/nvidia")).unwrap();
        let line = format!("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  Release\n");
        std::fs::write(p("proc/driver/nvidia/version"), line).unwrap();
    }
    if node {
        std::fs::write(p("dev/nvidia0"), "").unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu_check.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .arg(p("bundle"))
        .arg(p("data"))
        .args(["--skip-paper", "--skip-wgpu", "--out"])
        .arg(p("out"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_harness"))
        .env("GPU_CHECK_PROC", p("proc"))
        .env("GPU_CHECK_DEV", p("dev"))
        .env(
            "PATH",
            format!("{}:{}", p("bin").display(), std::env::var("PATH").unwrap()),
        );
    match visible {
        Some(v) => cmd.env("CUDA_VISIBLE_DEVICES", v),
        None => cmd.env_remove("CUDA_VISIBLE_DEVICES"),
    };
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_a_gpu_it_stops_at_once_naming_what_is_missing() {
    let (code, err) = gpu_check(None, false, None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no NVIDIA GPU can be used here")
            && err.contains("no NVIDIA driver")
            && err.contains("nvidia0 device node"),
        "{err}"
    );
    let (code, err) = gpu_check(Some("570.86.10"), true, Some("-1"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("CUDA_VISIBLE_DEVICES='-1' hides every GPU"),
        "{err}"
    );
    assert!(!err.contains("no NVIDIA driver"), "{err}");
}

#[test]
fn a_driver_older_than_the_build_is_refused_with_the_rebuild_command() {
    // 550.54.14 is CUDA 12.4's oldest driver; the bundle was built for 12.8.
    let (code, err) = gpu_check(Some("550.54.14"), true, None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("supports CUDA 12040, older than the 12080")
            && err.contains("CUDARC_CUDA_VERSION=12040 scripts/cuda_build.sh --package"),
        "{err}"
    );
}
